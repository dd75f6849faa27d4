package arrowfmt

import (
	"errors"
	"fmt"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
)

// Column-parallel Parquet needs each leaf column's definition and
// repetition levels, which pqarrow computes only inside its serial
// FileWriter. shredding computes them here, the Dremel way, for the types
// ParquetSchema leaves (primitives, dictionaries, lists, large lists,
// structs and maps, nested in any order), so that each top-level column can
// be encoded on its own goroutine with pqarrow.WriteArrowToColumn.

// errNullListValues is a null list entry that still owns child values:
// Parquet has no slot for them, and pqarrow refuses them too.
var errNullListValues = errors.New("a null list entry owns values, which Parquet cannot carry")

type shredKind int

const (
	shredLeaf shredKind = iota
	shredList
	shredStruct
)

// shredNode mirrors one Arrow field of a column.
type shredNode struct {
	kind     shredKind
	nullable bool
	children []*shredNode
	leaf     int   // the leaf's index in the column, for shredLeaf
	leaves   []int // every leaf under the node, in order
	// slotted[k] says whether leaves[k] has a value slot when this node is
	// null or empty: true unless a list lies between (a null or empty list
	// has no elements, so nothing below it has a slot).
	slotted  []bool
	repLevel int16 // for shredList: the repetition level of its elements
}

// shredPlan is a top-level column's tree and the levels its leaves reach.
type shredPlan struct {
	root           *shredNode
	leafNullable   []bool
	leafTypes      []arrow.DataType
	maxDef, maxRep []int16
	leafCount      int
}

// planShred answers the plan for a top-level field, or false for a type it
// does not know (the serial writer handles those).
func planShred(f arrow.Field) (*shredPlan, bool) {
	p := &shredPlan{}
	root, ok := p.node(f.Type, f.Nullable, 0, 0)
	if !ok {
		return nil, false
	}
	p.root = root
	p.leafCount = len(p.maxDef)
	return p, true
}

func (p *shredPlan) node(t arrow.DataType, nullable bool, def, rep int16) (*shredNode, bool) {
	n := &shredNode{nullable: nullable}
	if nullable {
		def++
	}
	if ext, ok := t.(arrow.ExtensionType); ok && isNested(ext.StorageType()) {
		t = ext.StorageType()
	}
	switch t := t.(type) {
	case *arrow.ListType:
		return p.list(n, t.ElemField(), def, rep)
	case *arrow.LargeListType:
		return p.list(n, t.ElemField(), def, rep)
	case *arrow.MapType:
		// A map is a list of non-null key/value structs.
		n.kind, n.repLevel = shredList, rep+1
		entries, ok := p.node(t.Elem(), false, def+1, rep+1)
		if !ok {
			return nil, false
		}
		n.children = []*shredNode{entries}
	case *arrow.StructType:
		if t.NumFields() == 0 {
			return nil, false
		}
		n.kind = shredStruct
		for _, f := range t.Fields() {
			c, ok := p.node(f.Type, f.Nullable, def, rep)
			if !ok {
				return nil, false
			}
			n.children = append(n.children, c)
		}
	case *arrow.FixedSizeListType, *arrow.ListViewType, *arrow.LargeListViewType, *arrow.RunEndEncodedType,
		*arrow.SparseUnionType, *arrow.DenseUnionType:
		return nil, false
	default:
		n.kind, n.leaf = shredLeaf, len(p.maxDef)
		p.maxDef, p.maxRep = append(p.maxDef, def), append(p.maxRep, rep)
		p.leafNullable = append(p.leafNullable, nullable)
		p.leafTypes = append(p.leafTypes, t)
		n.leaves, n.slotted = []int{n.leaf}, []bool{true}
		return n, true
	}
	for _, c := range n.children {
		n.leaves = append(n.leaves, c.leaves...)
		for _, s := range c.slotted {
			n.slotted = append(n.slotted, s && n.kind != shredList)
		}
	}
	return n, true
}

func (p *shredPlan) list(n *shredNode, elem arrow.Field, def, rep int16) (*shredNode, bool) {
	n.kind, n.repLevel = shredList, rep+1
	c, ok := p.node(elem.Type, elem.Nullable, def+1, rep+1)
	if !ok {
		return nil, false
	}
	n.children = []*shredNode{c}
	for _, l := range c.leaves {
		n.leaves = append(n.leaves, l)
		n.slotted = append(n.slotted, false)
	}
	return n, true
}

// shredded is one leaf's levels and the slice of its values they cover.
type shredded struct {
	def, rep []int16
	arr      arrow.Array // the leaf array; values are arr[first:next]
	first    int
	next     int
}

// shredder computes the levels of one column chunk.
type shredder struct {
	plan *shredPlan
	out  []shredded
	err  error
}

// shred answers each leaf's levels for arr, a chunk of the column planned
// by p. The caller releases the values it slices.
func (p *shredPlan) shred(arr arrow.Array) ([]shredded, error) {
	s := &shredder{plan: p, out: make([]shredded, p.leafCount)}
	for k := range s.out {
		s.out[k].first = -1
	}
	if p.root.kind == shredLeaf {
		s.flat(arr)
	} else {
		for i := 0; i < arr.Len() && s.err == nil; i++ {
			s.visit(p.root, arr, i, 0, 0)
		}
	}
	if s.err != nil {
		return nil, s.err
	}
	for k := range s.out {
		o := &s.out[k]
		if o.first < 0 {
			o.first, o.next = 0, 0
		}
		if p.maxDef[k] == 0 {
			o.def = nil
		}
		if p.maxRep[k] == 0 {
			o.rep = nil
		}
	}
	return s.out, nil
}

// flat is the common case, a top-level primitive: one level per row.
func (s *shredder) flat(arr arrow.Array) {
	o := &s.out[0]
	o.arr, o.first, o.next = arr, 0, arr.Len()
	if !s.plan.root.nullable {
		return
	}
	o.def = make([]int16, arr.Len())
	if arr.DataType().ID() == arrow.NULL {
		return // all null, whatever NullN says of a bitmap it lacks
	}
	if arr.NullN() == 0 {
		for i := range o.def {
			o.def[i] = 1
		}
		return
	}
	for i := range o.def {
		if arr.IsValid(i) {
			o.def[i] = 1
		}
	}
}

func (s *shredder) visit(n *shredNode, arr arrow.Array, i int, def, rep int16) {
	if ext, ok := arr.(array.ExtensionArray); ok && n.kind != shredLeaf {
		arr = ext.Storage()
	}
	if n.nullable {
		if arr.IsNull(i) || arr.DataType().ID() == arrow.NULL {
			s.absent(n, arr, i, def, rep)
			return
		}
		def++
	}
	switch n.kind {
	case shredLeaf:
		s.emit(n.leaf, arr, i, true, def, rep)
	case shredStruct:
		st := arr.(*array.Struct)
		for k, c := range n.children {
			s.visit(c, st.Field(k), i, def, rep)
		}
	case shredList:
		var start, end int64
		var values arrow.Array
		switch l := arr.(type) {
		case *array.List:
			start, end = l.ValueOffsets(i)
			values = l.ListValues()
		case *array.LargeList:
			start, end = l.ValueOffsets(i)
			values = l.ListValues()
		case *array.Map:
			start, end = l.ValueOffsets(i)
			values = l.ListValues()
		default:
			s.err = fmt.Errorf("shred: %s is not a list", arr.DataType())
			return
		}
		if start == end {
			s.absent(n, arr, i, def, rep)
			return
		}
		for j := start; j < end && s.err == nil; j++ {
			r := n.repLevel
			if j == start {
				r = rep
			}
			s.visit(n.children[0], values, int(j), def+1, r)
		}
	}
}

// absent writes the levels of a null (or empty list) node at row i to every
// leaf below it, with a value slot where the leaf array has one.
func (s *shredder) absent(n *shredNode, arr arrow.Array, i int, def, rep int16) {
	if n.kind == shredLeaf {
		s.emit(n.leaf, arr, i, true, def, rep)
		return
	}
	if n.kind == shredList {
		// The entry's child span must be empty: its values would have no slot.
		var start, end int64
		switch l := arr.(type) {
		case *array.List:
			start, end = l.ValueOffsets(i)
		case *array.LargeList:
			start, end = l.ValueOffsets(i)
		case *array.Map:
			start, end = l.ValueOffsets(i)
		}
		if start != end {
			s.err = errNullListValues
			return
		}
	}
	for k, leaf := range n.leaves {
		if !n.slotted[k] {
			s.emit(leaf, nil, 0, false, def, rep)
			continue
		}
		// A slotted leaf lies below structs only: it is aligned with arr.
		s.emit(leaf, s.leafArray(n, leaf, arr), i, true, def, rep)
	}
}

// leafArray walks struct children from n down to leaf.
func (s *shredder) leafArray(n *shredNode, leaf int, arr arrow.Array) arrow.Array {
	for n.kind != shredLeaf {
		if ext, ok := arr.(array.ExtensionArray); ok {
			arr = ext.Storage()
		}
		st := arr.(*array.Struct)
		for k, c := range n.children {
			if c.leaves[0] <= leaf && leaf <= c.leaves[len(c.leaves)-1] {
				n, arr = c, st.Field(k)
				break
			}
		}
	}
	return arr
}

func (s *shredder) emit(leaf int, arr arrow.Array, i int, slot bool, def, rep int16) {
	o := &s.out[leaf]
	o.def = append(o.def, def)
	o.rep = append(o.rep, rep)
	if !slot {
		return
	}
	switch {
	case o.first < 0:
		o.arr, o.first, o.next = arr, i, i+1
	case i == o.next:
		o.next++
	default:
		s.err = errNullListValues
	}
}
