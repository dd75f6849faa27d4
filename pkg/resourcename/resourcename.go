// Package resourcename parses and builds Sluice resource names:
// `tenants/{tenant}/environments/{environment}/{collection}/{id}`.
package resourcename

import (
	"fmt"
	"regexp"
	"strings"
)

// Production is the environment that deliveries to customers run in; every
// other environment is a sandbox.
const Production = "production"

// idPattern is AIP-122's resource id: lowercase letters, digits and hyphens,
// starting with a letter, not ending with a hyphen, at most 63 characters.
var idPattern = regexp.MustCompile(`^[a-z]([a-z0-9-]{0,61}[a-z0-9])?$`)

// ValidID answers an error saying which rule id breaks, or nil.
func ValidID(id string) error {
	if id == "" {
		return fmt.Errorf("is required")
	}
	if !idPattern.MatchString(id) {
		return fmt.Errorf("must be 1 to 63 characters of lowercase letters, digits and hyphens, start with a letter and not end with a hyphen; got %q", truncate(id))
	}
	return nil
}

// Parent is a tenant environment, the parent of every collection.
type Parent struct {
	Tenant      string
	Environment string
}

// String answers `tenants/{tenant}/environments/{environment}`.
func (p Parent) String() string {
	return "tenants/" + p.Tenant + "/environments/" + p.Environment
}

// Name is a resource in a collection of a tenant environment.
type Name struct {
	Parent
	Collection string
	ID         string
}

// String answers the full resource name.
func (n Name) String() string { return n.Parent.String() + "/" + n.Collection + "/" + n.ID }

// Child answers the name of id in collection under p.
func (p Parent) Child(collection, id string) Name {
	return Name{Parent: p, Collection: collection, ID: id}
}

// ParseParent reads `tenants/{tenant}/environments/{environment}`.
func ParseParent(s string) (Parent, error) {
	if s == "" {
		return Parent{}, fmt.Errorf("is required")
	}
	parts := strings.Split(s, "/")
	if len(parts) != 4 || parts[0] != "tenants" || parts[2] != "environments" {
		return Parent{}, fmt.Errorf("must have the form tenants/{tenant}/environments/{environment}; got %q", truncate(s))
	}
	if err := ValidID(parts[1]); err != nil {
		return Parent{}, fmt.Errorf("tenant %w", err)
	}
	if err := ValidID(parts[3]); err != nil {
		return Parent{}, fmt.Errorf("environment %w", err)
	}
	return Parent{Tenant: parts[1], Environment: parts[3]}, nil
}

// Parse reads `tenants/{tenant}/environments/{environment}/{collection}/{id}`
// and checks that the collection is the one expected.
func Parse(s, collection string) (Name, error) {
	if s == "" {
		return Name{}, fmt.Errorf("is required")
	}
	parts := strings.Split(s, "/")
	if len(parts) != 6 || parts[4] != collection {
		return Name{}, fmt.Errorf("must have the form tenants/{tenant}/environments/{environment}/%s/{id}; got %q", collection, truncate(s))
	}
	p, err := ParseParent(strings.Join(parts[:4], "/"))
	if err != nil {
		return Name{}, err
	}
	if err := ValidID(parts[5]); err != nil {
		return Name{}, fmt.Errorf("id %w", err)
	}
	return Name{Parent: p, Collection: collection, ID: parts[5]}, nil
}

// truncate keeps echoed input short in error messages.
func truncate(s string) string {
	const max = 80
	if len(s) <= max {
		return s
	}
	return s[:max] + "..."
}
