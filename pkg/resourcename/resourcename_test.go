package resourcename_test

import (
	"strings"
	"testing"

	"github.com/sluicehq/sluice/pkg/resourcename"
)

func TestParse(t *testing.T) {
	tests := []struct {
		in      string
		wantErr string
	}{
		{in: "tenants/acme/environments/production/credentials/s3-exports"},
		{in: "tenants/acme/environments/sandbox-1/credentials/c"},
		{in: "", wantErr: "is required"},
		{in: "tenants/acme/environments/production/destinations/d", wantErr: "credentials/{id}"},
		{in: "tenants/acme/environments/production/credentials", wantErr: "must have the form"},
		{in: "tenants/Acme/environments/production/credentials/c", wantErr: "tenant must be"},
		{in: "tenants/acme/environments/prod_1/credentials/c", wantErr: "environment must be"},
		{in: "tenants/acme/environments/production/credentials/c-", wantErr: "id must be"},
		{in: "tenants/acme/environments/production/credentials/" + strings.Repeat("a", 64), wantErr: "id must be"},
		{in: "projects/acme/environments/production/credentials/c", wantErr: "must have the form"},
	}
	for _, tt := range tests {
		n, err := resourcename.Parse(tt.in, "credentials")
		if tt.wantErr == "" {
			if err != nil {
				t.Errorf("Parse(%q): %v", tt.in, err)
			} else if n.String() != tt.in {
				t.Errorf("Parse(%q).String() = %q", tt.in, n.String())
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
			t.Errorf("Parse(%q) = %v, want an error containing %q", tt.in, err, tt.wantErr)
		}
	}
}

func FuzzParse(f *testing.F) {
	f.Add("tenants/acme/environments/production/credentials/c")
	f.Add("tenants//environments//credentials/")
	f.Add("tenants/a/environments/b/credentials/c/d")
	f.Fuzz(func(t *testing.T, s string) {
		n, err := resourcename.Parse(s, "credentials")
		if err != nil {
			return
		}
		if n.String() != s {
			t.Fatalf("Parse(%q) accepted a name that prints as %q", s, n.String())
		}
		if _, err := resourcename.ParseParent(n.Parent.String()); err != nil {
			t.Fatalf("the parent of an accepted name does not parse: %v", err)
		}
	})
}
