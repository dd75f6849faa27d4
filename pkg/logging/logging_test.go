package logging

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"strings"
	"testing"
)

// Fields learnt while a request runs reach every line logged with its
// context, derived contexts and earlier-made ones alike; a line naming a
// field itself keeps its own value, once.
func TestFieldsReachEveryLineOfTheRequest(t *testing.T) {
	var buf bytes.Buffer
	log := New(&buf, slog.LevelDebug, "test")
	ctx := WithFields(WithRequestID(context.Background(), "r1"))
	inner := WithFields(context.WithValue(ctx, struct{}{}, 1)) // the same set
	Add(inner, slog.String("subject", "u@acme.test"))
	Add(ctx, slog.String("delivery", "d1"), slog.String("subject", "u2@acme.test"))
	log.InfoContext(ctx, "outer")
	log.InfoContext(inner, "inner", slog.String("delivery", "its own"))
	log.InfoContext(context.Background(), "elsewhere")
	Add(context.Background(), slog.String("ignored", "x")) // no set: nothing

	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	if len(lines) != 3 {
		t.Fatalf("%d lines: %s", len(lines), buf.String())
	}
	want := []map[string]any{
		{"msg": "outer", "request_id": "r1", "subject": "u2@acme.test", "delivery": "d1"},
		{"msg": "inner", "request_id": "r1", "subject": "u2@acme.test", "delivery": "its own"},
		{"msg": "elsewhere"},
	}
	for i, line := range lines {
		if strings.Count(line, `"delivery"`) > 1 || strings.Count(line, `"subject"`) > 1 {
			t.Errorf("line %d repeats a key: %s", i, line)
		}
		var got map[string]any
		if err := json.Unmarshal([]byte(line), &got); err != nil {
			t.Fatal(err)
		}
		for k, v := range want[i] {
			if got[k] != v {
				t.Errorf("line %d: %s = %v, want %v (%s)", i, k, got[k], v, line)
			}
		}
		if i == 2 && (got["subject"] != nil || got["delivery"] != nil) {
			t.Errorf("a line outside the request carries its fields: %s", line)
		}
	}
}
