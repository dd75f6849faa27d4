package delivery

import (
	"context"
	"fmt"
	"log/slog"

	credentialv1 "github.com/sluicehq/sluice/gen/sluice/credential/v1"
	deliveryv1 "github.com/sluicehq/sluice/gen/sluice/delivery/v1"
	errorsv1 "github.com/sluicehq/sluice/gen/sluice/errors/v1"
	"github.com/sluicehq/sluice/pkg/awspolicy"
	"github.com/sluicehq/sluice/pkg/logging"
)

// Stable ids of workflow actions, for ResolveWorkflow.
const (
	actionFixBucketName   = "fix-bucket-name"
	actionFixCredential   = "fix-credential"
	actionGrantPermission = "grant-permission"
	actionFixTrustPolicy  = "fix-trust-policy"
	actionFixKMSKey       = "fix-kms-key"
	actionFixPGPKey       = "fix-pgp-key"
	actionRetryTask       = "retry-task"
	actionRestart         = "restart-workflow"
)

// fixContext is what the actions of a failure point at.
type fixContext struct {
	destination, credential, bucket, prefix, kmsKey string
	// missingPermission is the IAM action refused, for ACCESS_DENIED.
	missingPermission string
	// rerunnable is true when the delivery's input is kept, so that it can
	// run again without its caller.
	rerunnable bool
}

// actionsFor answers the actions that resolve a failure with reason: the
// cause's own first, then retrying the failed step and restarting the
// workflow. Every action reruns from the kept input, so without it there
// is none: the caller must send the data again.
func (s *Service) actionsFor(ctx context.Context, d *deliveryv1.Delivery, reason errorsv1.ErrorReason, cause *deliveryv1.DeliveryError, fix fixContext) []*deliveryv1.WorkflowAction {
	if !fix.rerunnable {
		return nil
	}
	var actions []*deliveryv1.WorkflowAction
	switch reason {
	case errorsv1.ErrorReason_ERROR_REASON_INVALID_BUCKET_NAME, errorsv1.ErrorReason_ERROR_REASON_BUCKET_NOT_FOUND, errorsv1.ErrorReason_ERROR_REASON_REGION_MISMATCH:
		verify := fmt.Sprintf("Open the AWS management console and verify the bucket's name (Sluice used %q).", fix.bucket)
		if reason == errorsv1.ErrorReason_ERROR_REASON_REGION_MISMATCH {
			verify = fmt.Sprintf("Open the AWS management console and look up the region of bucket %q.", fix.bucket)
		}
		actions = append(actions, &deliveryv1.WorkflowAction{
			Id: actionFixBucketName, Kind: deliveryv1.ActionKind_ACTION_KIND_FIX_BUCKET_NAME, Title: "Correct the bucket name",
			Target: fix.destination,
			Instructions: []string{
				verify,
				"Open the destination of this workflow: " + fix.destination + ".",
				"Correct its bucket name (S3 bucket name), or the region of its credential " + fix.credential + ".",
				"Resolve to retry.",
			},
		})
	case errorsv1.ErrorReason_ERROR_REASON_INVALID_CREDENTIALS, errorsv1.ErrorReason_ERROR_REASON_CREDENTIAL_DELETED:
		actions = append(actions, &deliveryv1.WorkflowAction{
			Id: actionFixCredential, Kind: deliveryv1.ActionKind_ACTION_KIND_FIX_CREDENTIAL, Title: "Update the credential",
			Target: fix.credential,
			Instructions: []string{
				"Open the credentials.",
				"Review the credential this workflow uses (" + fix.credential + ") and update it: check the access key id and the secret access key, and that the key is active.",
				"Resolve to retry.",
			},
		})
	case errorsv1.ErrorReason_ERROR_REASON_ACCESS_DENIED:
		perm := fix.missingPermission
		a := &deliveryv1.WorkflowAction{
			Id: actionGrantPermission, Kind: deliveryv1.ActionKind_ACTION_KIND_GRANT_PERMISSION, Title: "Grant the missing permission",
			Target: fix.credential, MissingPermission: perm,
		}
		if perm != "" {
			a.Title = "Grant " + perm
			a.PolicyJson = awspolicy.Grant(perm, fix.bucket, fix.prefix, fix.kmsKey)
			a.Instructions = []string{
				fmt.Sprintf("Open the AWS management console, IAM, and the role or user of credential %s.", fix.credential),
				fmt.Sprintf("Add the statement below to its permissions: it allows %s on bucket %q under prefix %q.", perm, fix.bucket, fix.prefix),
				"Resolve to retry.",
			}
		} else {
			a.Instructions = []string{
				fmt.Sprintf("Open the AWS management console and review the policy of bucket %q and the permissions of the role or user of credential %s.", fix.bucket, fix.credential),
				"Allow the role or user to write under the destination's prefix.",
				"Resolve to retry.",
			}
		}
		actions = append(actions, a)
	case errorsv1.ErrorReason_ERROR_REASON_ROLE_NOT_ASSUMABLE:
		a := &deliveryv1.WorkflowAction{
			Id: actionFixTrustPolicy, Kind: deliveryv1.ActionKind_ACTION_KIND_FIX_TRUST_POLICY, Title: "Fix the role's trust policy",
			Target: fix.credential, PolicyJson: s.trustPolicy(ctx, fix.credential),
			Instructions: []string{
				"Open the AWS management console, IAM, and the role of credential " + fix.credential + ".",
				"Replace its trust policy with the one below: it lets Sluice's platform role assume the role with exactly this credential's External ID.",
				"If the role ARN itself is wrong, open the credential and correct it.",
				"Resolve to retry.",
			},
		}
		actions = append(actions, a)
	case errorsv1.ErrorReason_ERROR_REASON_PGP_KEY_NOT_USABLE:
		actions = append(actions, &deliveryv1.WorkflowAction{
			Id: actionFixPGPKey, Kind: deliveryv1.ActionKind_ACTION_KIND_FIX_PGP_KEY, Title: "Replace the PGP public key",
			Target: fix.destination,
			Instructions: []string{
				"Ask the recipient for their current public key: its encryption subkey has expired or was revoked (extend it with `gpg --quick-set-expire <fingerprint> 1y '*'`, or add a new one with `gpg --quick-add-key <fingerprint> cv25519 encr`, then export it with `gpg --armor --export`).",
				"Open the destination of this workflow: " + fix.destination + ".",
				"Paste the new key as its PGP public key.",
				"Resolve to retry.",
			},
		})
	case errorsv1.ErrorReason_ERROR_REASON_KMS_KEY_NOT_USABLE:
		a := &deliveryv1.WorkflowAction{
			Id: actionFixKMSKey, Kind: deliveryv1.ActionKind_ACTION_KIND_FIX_KMS_KEY, Title: "Make the KMS key usable",
			Target: fix.destination, MissingPermission: fix.missingPermission,
			Instructions: []string{
				"Open the AWS management console, KMS, and the key of the destination " + fix.destination + ".",
				"Check that the key exists and is enabled, and that the role or user of credential " + fix.credential + " may use it for encryption (kms:GenerateDataKey).",
				"Resolve to retry.",
			},
		}
		if fix.missingPermission != "" {
			a.PolicyJson = awspolicy.Grant(fix.missingPermission, fix.bucket, fix.prefix, fix.kmsKey)
		}
		actions = append(actions, a)
	}
	return append(actions,
		&deliveryv1.WorkflowAction{Id: actionRetryTask, Kind: deliveryv1.ActionKind_ACTION_KIND_RETRY_TASK, Title: "Retry the failed step",
			Instructions: []string{"Sluice continues from where the delivery failed, from the data it kept: the files that already landed stay as they are, and only the rest are written."}},
		&deliveryv1.WorkflowAction{Id: actionRestart, Kind: deliveryv1.ActionKind_ACTION_KIND_RESTART_WORKFLOW, Title: "Restart the workflow",
			Instructions: []string{"Sluice removes what the failed run wrote and runs every step again from the data it kept, with the destination and credential as they are now."}},
	)
}

// trustPolicy answers the trust policy a role-to-role credential needs, as
// the credential service shows it to the caller; empty when it cannot be
// read (the action then says where to find it).
func (s *Service) trustPolicy(ctx context.Context, credential string) string {
	if s.peers.Credentials == nil || credential == "" {
		return ""
	}
	c, err := s.peers.Credentials.GetCredential(ctx, &credentialv1.GetCredentialRequest{Name: credential})
	if err != nil {
		logging.FromContext(ctx).InfoContext(ctx, "read the trust policy for a workflow action", slog.String("credential", credential), slog.String("error", err.Error()))
		return ""
	}
	return c.GetRoleToRole().GetTrustPolicyJson()
}
