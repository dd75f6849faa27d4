package testenv

import (
	"context"
	"fmt"
	"net/url"

	"github.com/minio/madmin-go/v3"
)

// SetMinIOUser creates (or updates) a MinIO user with the given key pair
// whose only permissions are policy (an IAM policy document), through
// MinIO's admin API. It lives here, not in localserver, so that the admin
// client is linked into tests only.
func SetMinIOUser(ctx context.Context, m *MinIO, accessKey, secretKey, policy string) error {
	u, err := url.Parse(m.Endpoint)
	if err != nil {
		return fmt.Errorf("minio admin: %w", err)
	}
	adm, err := madmin.New(u.Host, m.RootUser, m.RootPassword, u.Scheme == "https")
	if err != nil {
		return fmt.Errorf("minio admin: %w", err)
	}
	if tr := m.HTTPClient().Transport; tr != nil {
		adm.SetCustomTransport(tr) // trusts MinIO's CA over HTTPS
	}
	policyName := "policy-" + accessKey
	if err := adm.AddCannedPolicy(ctx, policyName, []byte(policy)); err != nil {
		return fmt.Errorf("minio admin: add policy: %w", err)
	}
	if err := adm.AddUser(ctx, accessKey, secretKey); err != nil {
		return fmt.Errorf("minio admin: add user: %w", err)
	}
	if err := adm.SetPolicy(ctx, policyName, accessKey, false); err != nil {
		return fmt.Errorf("minio admin: attach policy: %w", err)
	}
	return nil
}
