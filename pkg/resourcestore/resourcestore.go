// Package resourcestore keeps AIP resources (protobuf messages with name,
// etag, create_time and update_time fields) in a SQL table on SQLite or
// PostgreSQL: create, get, list by parent in name order with page tokens,
// read-modify-write updates and deletes guarded by etags.
//
// A table has the columns
//
//	name TEXT PRIMARY KEY, parent TEXT NOT NULL, data BLOB|BYTEA NOT NULL,
//	etag TEXT NOT NULL, create_time BIGINT NOT NULL, update_time BIGINT NOT NULL
//
// created by the owning service's migrations, which may add more.
package resourcestore

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"regexp"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/sluicehq/sluice/pkg/apierror"
	"github.com/sluicehq/sluice/pkg/sqlstore"
)

// Table stores messages of type T in one SQL table.
type Table[T proto.Message] struct {
	db    *sqlstore.DB
	table string
	cols  []Column[T]
}

// Column is an extra column the owning service's migrations created, kept in
// step with the message on every write so that List can filter on it.
type Column[T proto.Message] struct {
	Name  string
	Value func(T) any
}

// Where filters List to rows whose Column equals Value.
type Where struct {
	Column string
	Value  any
}

var tableName = regexp.MustCompile(`^[a-z_][a-z0-9_]*$`)

// New answers the table named table; T must have string fields `name` and
// `etag` and Timestamp fields `create_time` and `update_time`.
func New[T proto.Message](db *sqlstore.DB, table string, cols ...Column[T]) (*Table[T], error) {
	if !tableName.MatchString(table) {
		return nil, fmt.Errorf("resourcestore: bad table name %q", table)
	}
	for _, c := range cols {
		if !tableName.MatchString(c.Name) || c.Value == nil {
			return nil, fmt.Errorf("resourcestore: bad column %q", c.Name)
		}
	}
	var zero T
	md := zero.ProtoReflect().Descriptor()
	for _, f := range []struct {
		name string
		kind protoreflect.Kind
	}{{"name", protoreflect.StringKind}, {"etag", protoreflect.StringKind}, {"create_time", protoreflect.MessageKind}, {"update_time", protoreflect.MessageKind}} {
		fd := md.Fields().ByName(protoreflect.Name(f.name))
		if fd == nil || fd.Kind() != f.kind || fd.IsList() {
			return nil, fmt.Errorf("resourcestore: %s has no %s field of kind %s", md.FullName(), f.name, f.kind)
		}
	}
	return &Table[T]{db: db, table: table, cols: cols}, nil
}

func field(m protoreflect.Message, name string) protoreflect.FieldDescriptor {
	return m.Descriptor().Fields().ByName(protoreflect.Name(name))
}

func getString(msg proto.Message, name string) string {
	m := msg.ProtoReflect()
	return m.Get(field(m, name)).String()
}

func setString(msg proto.Message, name, v string) {
	m := msg.ProtoReflect()
	m.Set(field(m, name), protoreflect.ValueOfString(v))
}

func setTime(msg proto.Message, name string, t time.Time) {
	m := msg.ProtoReflect()
	m.Set(field(m, name), protoreflect.ValueOfMessage(timestamppb.New(t).ProtoReflect()))
}

func getTime(msg proto.Message, name string) time.Time {
	m := msg.ProtoReflect()
	ts, ok := m.Get(field(m, name)).Message().Interface().(*timestamppb.Timestamp)
	if !ok || ts == nil {
		return time.Time{}
	}
	return ts.AsTime()
}

// encode stamps the etag (a digest of the content) and answers the bytes
// to store. The etag field itself is cleared before hashing.
func encode(msg proto.Message) ([]byte, string, error) {
	setString(msg, "etag", "")
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(msg)
	if err != nil {
		return nil, "", fmt.Errorf("encode: %w", err)
	}
	sum := sha256.Sum256(b)
	etag := hex.EncodeToString(sum[:12])
	setString(msg, "etag", etag)
	return b, etag, nil
}

func (t *Table[T]) decode(b []byte, etag string) (T, error) {
	var zero T
	msg := zero.ProtoReflect().New().Interface().(T)
	if err := proto.Unmarshal(b, msg); err != nil {
		return zero, fmt.Errorf("decode %s row: %w", t.table, err)
	}
	setString(msg, "etag", etag)
	return msg, nil
}

// Also is work that must commit or roll back with a table write, such as a
// row in a side table that the resource owns.
type Also func(ctx context.Context, tx *sql.Tx) error

// Create stores msg under its name and parent, stamping create_time,
// update_time and etag, and answers the stored copy. A name already taken
// answers apierror.ErrAlreadyExists. also runs in the same transaction.
func (t *Table[T]) Create(ctx context.Context, parent string, msg T, also ...Also) (T, error) {
	var zero T
	msg = proto.Clone(msg).(T)
	err := t.db.InTx(ctx, func(tx *sql.Tx) error {
		if err := t.insert(ctx, tx, parent, msg); err != nil {
			return err
		}
		return runAlso(ctx, tx, also)
	})
	if err != nil {
		return zero, err
	}
	return msg, nil
}

// Creating answers the creation of msg as work for another table's write,
// so that the two commit together (a delivery and its workflow).
func (t *Table[T]) Creating(parent string, msg T) Also {
	msg = proto.Clone(msg).(T)
	return func(ctx context.Context, tx *sql.Tx) error { return t.insert(ctx, tx, parent, msg) }
}

// insert stamps msg and inserts it in tx.
func (t *Table[T]) insert(ctx context.Context, tx *sql.Tx, parent string, msg T) error {
	name := getString(msg, "name")
	if name == "" || parent == "" {
		return errors.New("resourcestore: create needs a name and a parent")
	}
	now := time.Now().UTC()
	setTime(msg, "create_time", now)
	setTime(msg, "update_time", now)
	b, etag, err := encode(msg)
	if err != nil {
		return err
	}
	names, marks := "", ""
	args := []any{name, parent, b, etag, now.UnixMicro(), now.UnixMicro()}
	for _, c := range t.cols {
		names, marks = names+", "+c.Name, marks+", ?"
		args = append(args, c.Value(msg))
	}
	_, err = tx.ExecContext(ctx, t.db.Rebind(`INSERT INTO `+t.table+
		` (name, parent, data, etag, create_time, update_time`+names+`) VALUES (?, ?, ?, ?, ?, ?`+marks+`)`), args...)
	if sqlstore.IsUniqueViolation(err) {
		return fmt.Errorf("create %s: %w", name, apierror.ErrAlreadyExists)
	}
	if err != nil {
		return fmt.Errorf("create %s: %w", name, err)
	}
	return nil
}

type querier interface {
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

func (t *Table[T]) get(ctx context.Context, q querier, name string, forUpdate bool) (T, error) {
	var zero T
	query := `SELECT data, etag FROM ` + t.table + ` WHERE name = ?`
	if forUpdate && t.db.Dialect == sqlstore.Postgres {
		query += ` FOR UPDATE`
	}
	var (
		b    []byte
		etag string
	)
	err := q.QueryRowContext(ctx, t.db.Rebind(query), name).Scan(&b, &etag)
	if errors.Is(err, sql.ErrNoRows) {
		return zero, fmt.Errorf("%s: %w", name, apierror.ErrNotFound)
	}
	if err != nil {
		return zero, fmt.Errorf("get %s: %w", name, err)
	}
	return t.decode(b, etag)
}

// Get answers the stored message or apierror.ErrNotFound.
func (t *Table[T]) Get(ctx context.Context, name string) (T, error) {
	return t.get(ctx, t.db, name, false)
}

// MaxPageBytes bounds the stored size of one List page; a page holds at
// least one message, however large.
const MaxPageBytes = 1 << 20

// List answers up to limit messages (and about MaxPageBytes) under parent with names after `after`
// that match every where, in name order, and the name to resume after (""
// when none are left).
func (t *Table[T]) List(ctx context.Context, parent, after string, limit int, where ...Where) ([]T, string, error) {
	return t.list(ctx, parent, after, false, limit, where)
}

// ListDescending is List in reverse name order: names before `before` (all
// when empty), answering the name to resume before. With names that start
// with their creation time, it lists newest first.
func (t *Table[T]) ListDescending(ctx context.Context, parent, before string, limit int, where ...Where) ([]T, string, error) {
	return t.list(ctx, parent, before, true, limit, where)
}

func (t *Table[T]) list(ctx context.Context, parent, from string, desc bool, limit int, where []Where) ([]T, string, error) {
	if limit <= 0 {
		return nil, "", errors.New("resourcestore: list limit must be positive")
	}
	bound, order := "name > ?", "ORDER BY name"
	if desc {
		bound, order = "name < ?", "ORDER BY name DESC"
		if from == "" {
			bound = "? = ''"
		}
	}
	cond, args := "", []any{parent, from}
	for _, w := range where {
		if !t.hasColumn(w.Column) {
			return nil, "", fmt.Errorf("resourcestore: %s has no column %q to filter on", t.table, w.Column)
		}
		cond += " AND " + w.Column + " = ?"
		args = append(args, w.Value)
	}
	rows, err := t.db.QueryContext(ctx, t.db.Rebind(`SELECT name, data, etag FROM `+t.table+
		` WHERE parent = ? AND `+bound+cond+` `+order+` LIMIT ?`), append(args, limit+1)...)
	if err != nil {
		return nil, "", fmt.Errorf("list %s: %w", t.table, err)
	}
	defer rows.Close()
	var (
		out   []T
		names []string
		size  int
	)
	for rows.Next() {
		var (
			name, etag string
			b          []byte
		)
		if err := rows.Scan(&name, &b, &etag); err != nil {
			return nil, "", fmt.Errorf("list %s: %w", t.table, err)
		}
		if size += len(b); len(out) > 0 && size > MaxPageBytes && len(out) < limit {
			// Bounded in bytes as well as items, so that no page outgrows
			// a gRPC message; this row starts the next page.
			return out, names[len(names)-1], nil
		}
		msg, err := t.decode(b, etag)
		if err != nil {
			return nil, "", err
		}
		out, names = append(out, msg), append(names, name)
	}
	if err := rows.Err(); err != nil {
		return nil, "", fmt.Errorf("list %s: %w", t.table, err)
	}
	if len(out) > limit {
		return out[:limit], names[limit-1], nil
	}
	return out, "", nil
}

// Find answers up to limit messages of any parent whose row matches cond,
// a SQL condition on the table's columns with ? placeholders: for a
// service's own upkeep (recovery, sweeps), never for a caller's request.
func (t *Table[T]) Find(ctx context.Context, limit int, cond string, args ...any) ([]T, error) {
	return t.find(ctx, t.db, limit, cond, args)
}

// FindIn is Find in tx, for a write that depends on what it finds (the
// subscriptions an event goes to, read in the transaction that writes it).
func (t *Table[T]) FindIn(ctx context.Context, tx *sql.Tx, limit int, cond string, args ...any) ([]T, error) {
	return t.find(ctx, tx, limit, cond, args)
}

func (t *Table[T]) find(ctx context.Context, q interface {
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
}, limit int, cond string, args []any) ([]T, error) {
	rows, err := q.QueryContext(ctx, t.db.Rebind(`SELECT data, etag FROM `+t.table+` WHERE `+cond+` ORDER BY name LIMIT ?`), append(args, limit)...)
	if err != nil {
		return nil, fmt.Errorf("find in %s: %w", t.table, err)
	}
	defer rows.Close()
	var out []T
	for rows.Next() {
		var (
			b    []byte
			etag string
		)
		if err := rows.Scan(&b, &etag); err != nil {
			return nil, fmt.Errorf("find in %s: %w", t.table, err)
		}
		msg, err := t.decode(b, etag)
		if err != nil {
			return nil, err
		}
		out = append(out, msg)
	}
	return out, rows.Err()
}

// Update reads the message, checks etag when it is not empty (a mismatch
// answers apierror.ErrEtagMismatch), lets mutate change it, and stores it
// with a new update_time and etag, all in one transaction with also. The
// name, create_time and etag fields cannot be changed by mutate.
func (t *Table[T]) Update(ctx context.Context, name, etag string, mutate func(T) error, also ...Also) (T, error) {
	var out T
	err := t.db.InTx(ctx, func(tx *sql.Tx) error {
		msg, err := t.update(ctx, tx, name, etag, mutate)
		if err != nil {
			return err
		}
		out = msg
		return runAlso(ctx, tx, also)
	})
	return out, err
}

// Updating answers Update of name as work for another table's write, so
// that the two commit together; the stored message goes to *out when out
// is not nil.
func (t *Table[T]) Updating(name, etag string, mutate func(T) error, out *T) Also {
	return func(ctx context.Context, tx *sql.Tx) error {
		msg, err := t.update(ctx, tx, name, etag, mutate)
		if err == nil && out != nil {
			*out = msg
		}
		return err
	}
}

func (t *Table[T]) update(ctx context.Context, tx *sql.Tx, name, etag string, mutate func(T) error) (T, error) {
	var zero T
	msg, err := t.get(ctx, tx, name, true)
	if err != nil {
		return zero, err
	}
	if etag != "" && etag != getString(msg, "etag") {
		return zero, fmt.Errorf("update %s: %w", name, apierror.ErrEtagMismatch)
	}
	created := getTime(msg, "create_time")
	if err := mutate(msg); err != nil {
		return zero, err
	}
	setString(msg, "name", name)
	setTime(msg, "create_time", created)
	now := time.Now().UTC()
	setTime(msg, "update_time", now)
	b, newEtag, err := encode(msg)
	if err != nil {
		return zero, err
	}
	set, args := "", []any{b, newEtag, now.UnixMicro()}
	for _, c := range t.cols {
		set += ", " + c.Name + " = ?"
		args = append(args, c.Value(msg))
	}
	if _, err := tx.ExecContext(ctx, t.db.Rebind(`UPDATE `+t.table+
		` SET data = ?, etag = ?, update_time = ?`+set+` WHERE name = ?`), append(args, name)...); err != nil {
		return zero, fmt.Errorf("update %s: %w", name, err)
	}
	return msg, nil
}

// Deleting answers the removal of name, if it exists, as work for another
// table's write, so that the two commit together.
func (t *Table[T]) Deleting(name string) Also {
	return func(ctx context.Context, tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, t.db.Rebind(`DELETE FROM `+t.table+` WHERE name = ?`), name); err != nil {
			return fmt.Errorf("delete %s: %w", name, err)
		}
		return nil
	}
}

// Delete removes the message, checking etag when it is not empty; also runs
// in the same transaction.
func (t *Table[T]) Delete(ctx context.Context, name, etag string, also ...Also) error {
	return t.db.InTx(ctx, func(tx *sql.Tx) error {
		msg, err := t.get(ctx, tx, name, true)
		if err != nil {
			return err
		}
		if etag != "" && etag != getString(msg, "etag") {
			return fmt.Errorf("delete %s: %w", name, apierror.ErrEtagMismatch)
		}
		if _, err := tx.ExecContext(ctx, t.db.Rebind(`DELETE FROM `+t.table+` WHERE name = ?`), name); err != nil {
			return fmt.Errorf("delete %s: %w", name, err)
		}
		return runAlso(ctx, tx, also)
	})
}

func (t *Table[T]) hasColumn(name string) bool {
	for _, c := range t.cols {
		if c.Name == name {
			return true
		}
	}
	return false
}

func runAlso(ctx context.Context, tx *sql.Tx, also []Also) error {
	for _, fn := range also {
		if err := fn(ctx, tx); err != nil {
			return err
		}
	}
	return nil
}
