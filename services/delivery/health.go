package delivery

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"slices"
	"strings"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	credentialv1 "github.com/sluicehq/sluice/gen/sluice/credential/v1"
	deliveryv1 "github.com/sluicehq/sluice/gen/sluice/delivery/v1"
	destinationv1 "github.com/sluicehq/sluice/gen/sluice/destination/v1"
	"github.com/sluicehq/sluice/pkg/apierror"
	"github.com/sluicehq/sluice/pkg/resourcename"
	"github.com/sluicehq/sluice/pkg/resourcestore"
	"github.com/sluicehq/sluice/services/delivery/store"
)

// kindHealth is the health watcher's pass, leased to one replica at a time.
const kindHealth = "health"

// inUseWindow is how far back a delivery makes its destination one the
// watcher tests.
const inUseWindow = 30 * 24 * time.Hour

// now is the service's clock: Config.Clock when set (tests move it
// forward), else the wall clock.
func (s *Service) now() time.Time {
	if s.cfg.Clock != nil {
		return s.cfg.Clock()
	}
	return time.Now()
}

// healthEvery answers the pause before the next pass: HealthInterval with
// a tenth of jitter either way, so that replicas started together and
// many destinations do not test at the same moment.
func (s *Service) healthEvery() time.Duration {
	d := s.cfg.Health.Interval
	if d <= 0 {
		return time.Hour // off: the work waits, for a replica that runs it
	}
	j := d / 10
	return d - j + rand.N(2*j+1)
}

// healthPass tests every destination in use as TestDestination does, and
// the age of each access key they use. A check that passed and now fails
// raises a WARNING with the resolutions a failed delivery would get, and a
// `destination.unhealthy` (or `credential.expiring`) event; it clears
// itself when the check passes again.
func (s *Service) healthPass(ctx context.Context) error {
	dests, err := s.store.DestinationsInUse(ctx, time.Now().Add(-inUseWindow))
	if err != nil {
		return err
	}
	var errs []error
	creds := map[string]*credentialv1.Credential{}
	credentialOf := func(name string) *credentialv1.Credential {
		c, ok := creds[name]
		if !ok {
			c, err = s.peers.Credentials.GetCredential(ctx, &credentialv1.GetCredentialRequest{Name: name})
			if err != nil && status.Code(err) != codes.NotFound {
				errs = append(errs, fmt.Errorf("get %s: %w", name, err))
			}
			creds[name] = c
		}
		return c
	}
	for _, name := range dests {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		dest, err := s.peers.Destinations.ResolveDestination(ctx, &destinationv1.ResolveDestinationRequest{Name: name})
		if status.Code(err) == codes.NotFound {
			continue // deleted: nothing will be delivered to it
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("resolve %s: %w", name, err))
			continue
		}
		res, err := s.peers.Destinations.TestDestination(ctx, &destinationv1.TestDestinationRequest{Name: name})
		if err != nil {
			errs = append(errs, fmt.Errorf("test %s: %w", name, err))
			continue
		}
		if err := s.recordHealth(ctx, dest, credentialOf(dest.GetCredential()), res); err != nil {
			errs = append(errs, err)
		}
	}
	for name, c := range creds {
		if c == nil || ctx.Err() != nil {
			continue
		}
		if err := s.checkKeyAge(ctx, name, c); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// failedCheck answers the first check of res that failed; nil when all
// passed.
func failedCheck(res *credentialv1.TestResult) *credentialv1.TestCheck {
	for _, c := range res.GetChecks() {
		if c.GetOutcome() == credentialv1.TestOutcome_TEST_OUTCOME_FAILED {
			return c
		}
	}
	return nil
}

// recordHealth stores a destination's test and raises or clears its
// warning.
func (s *Service) recordHealth(ctx context.Context, dest *destinationv1.Destination, cred *credentialv1.Credential, res *credentialv1.TestResult) error {
	failed := failedCheck(res)
	if res.GetOk() && failed != nil {
		failed = nil
	}
	if !res.GetOk() && failed == nil {
		failed = &credentialv1.TestCheck{Check: "test", Reason: "UNKNOWN", Message: "the destination's test failed"}
	}
	var warning *deliveryv1.Notification
	var event *pendingEvent
	if failed != nil {
		warning = s.destinationWarning(ctx, dest, cred, failed)
		data, err := json.Marshal(map[string]any{"destination": dest.GetName(), "check": map[string]string{
			"check": failed.GetCheck(), "reason": failed.GetReason(), "message": failed.GetMessage(), "missing_permission": failed.GetMissingPermission()},
			"notification": warning.GetName()})
		if err != nil {
			return err
		}
		event = &pendingEvent{t: deliveryv1.EventType_EVENT_TYPE_DESTINATION_UNHEALTHY, destination: dest.GetName(), data: data}
	}
	return s.settleHealth(ctx, dest.GetName(), failed.GetReason(), warning, event)
}

// settleHealth stores the outcome of a check of subject: failing with
// reason (warning and event raised when it passed before), or passing
// (its warning acknowledged, so that it leaves the unacknowledged ones).
func (s *Service) settleHealth(ctx context.Context, subject, reason string, warning *deliveryv1.Notification, event *pendingEvent) error {
	prev, err := s.store.HealthOf(ctx, subject)
	if err != nil {
		return err
	}
	h := store.Health{Subject: subject, Checked: s.now(), CheckedBy: s.cfg.Instance}
	failing := warning != nil
	switch {
	case failing && !prev.Failing:
		h.Failing, h.Reason, h.Notification = true, reason, warning.GetName()
		parent := parentOf(warning.GetName())
		also := []resourcestore.Also{s.store.SettingHealth(h)}
		wrote := false
		if event != nil {
			also = append(also, func(ctx context.Context, tx *sql.Tx) error {
				var err error
				wrote, err = s.writeEvent(ctx, tx, parent, *event)
				return err
			})
		}
		if _, err := s.store.Notifications.Create(ctx, parent, warning, also...); err != nil {
			return fmt.Errorf("warn of %s: %w", subject, err)
		}
		if wrote {
			s.wakeSender()
		}
		s.log.WarnContext(ctx, "health check started failing", slog.String("subject", subject), slog.String("reason", reason))
		return nil
	case failing:
		h.Failing, h.Reason, h.Notification = true, prev.Reason, prev.Notification
		return s.store.SetHealth(ctx, h)
	case prev.Failing && prev.Notification != "":
		_, err := s.store.Notifications.Update(ctx, prev.Notification, "", func(n *deliveryv1.Notification) error {
			if !n.GetAcknowledged() {
				n.Acknowledged, n.AcknowledgeTime = true, timestamppb.New(s.now())
			}
			n.Message += " Cleared: the check passed again at " + s.now().UTC().Format(time.RFC3339) + "."
			return nil
		}, s.store.SettingHealth(h))
		if errors.Is(err, apierror.ErrNotFound) {
			return s.store.SetHealth(ctx, h)
		}
		if err == nil {
			s.log.InfoContext(ctx, "health check passes again", slog.String("subject", subject))
		}
		return err
	default:
		return s.store.SetHealth(ctx, h)
	}
}

// destinationWarning is the WARNING a destination raises when its test
// starts failing: the failed check in plain words, and what resolves it.
func (s *Service) destinationWarning(ctx context.Context, dest *destinationv1.Destination, cred *credentialv1.Credential, failed *credentialv1.TestCheck) *deliveryv1.Notification {
	n, err := resourcename.Parse(dest.GetName(), "destinations")
	if err != nil {
		return nil
	}
	reason := apierror.ParseReason(failed.GetReason())
	bucket := dest.GetBucketOverride()
	if bucket == "" {
		bucket = cred.GetBucket()
	}
	fix := fixContext{destination: dest.GetName(), credential: dest.GetCredential(), bucket: bucket, prefix: dest.GetPrefix(),
		kmsKey: dest.GetEncryption().GetKmsKeyId(), missingPermission: failed.GetMissingPermission(), rerunnable: true}
	var actions []*deliveryv1.WorkflowAction
	for _, a := range s.actionsFor(ctx, nil, reason, nil, fix) {
		if a.GetId() == actionRetryTask || a.GetId() == actionRestart {
			continue // nothing failed yet: nothing to run again
		}
		a = proto.Clone(a).(*deliveryv1.WorkflowAction)
		for i, step := range a.Instructions {
			if step == "Resolve to retry." {
				a.Instructions[i] = "The warning clears itself at the next check once this is fixed."
			}
		}
		a.Instructions = slices.Compact(a.Instructions)
		actions = append(actions, a)
	}
	return &deliveryv1.Notification{
		Name: n.Parent.String() + "/" + notifications + "/" + newID(s.now()), Severity: deliveryv1.Severity_SEVERITY_WARNING,
		Title: fmt.Sprintf("Deliveries to %s will fail: %s", n.ID, plainReason(reason)),
		Message: fmt.Sprintf("Sluice tests destinations in use every %s; the %s check of %s now fails: %s.", s.cfg.Health.Interval,
			failed.GetCheck(), n.ID, strings.TrimSuffix(failed.GetMessage(), ".")),
		Destination: dest.GetName(), Reason: failed.GetReason(), Actions: actions,
	}
}

// checkKeyAge warns when an access key credential's secret was set longer
// ago than the rotation period less the warning window.
func (s *Service) checkKeyAge(ctx context.Context, name string, c *credentialv1.Credential) error {
	key := c.GetAccessKey()
	if key == nil || key.GetSecretUpdateTime() == nil {
		return nil // roles have no key to rotate; the test catches a trust policy change
	}
	set, how := key.GetSecretUpdateTime().AsTime(), "set"
	if created := key.GetKeyCreateTime(); created != nil && created.AsTime().Before(set) {
		set, how = created.AsTime(), "created (IAM says)"
	}
	rotateBy := set.Add(time.Duration(s.cfg.Health.KeyRotationDays) * 24 * time.Hour)
	subject := "key-age:" + name
	if s.now().Before(rotateBy.Add(-time.Duration(s.cfg.Health.KeyWarnDays) * 24 * time.Hour)) {
		return s.settleHealth(ctx, subject, "", nil, nil)
	}
	n, err := resourcename.Parse(name, "credentials")
	if err != nil {
		return err
	}
	age := int(s.now().Sub(set).Hours() / 24)
	warning := &deliveryv1.Notification{
		Name: n.Parent.String() + "/" + notifications + "/" + newID(s.now()), Severity: deliveryv1.Severity_SEVERITY_WARNING,
		Title: fmt.Sprintf("Rotate the access key of credential %s by %s", n.ID, rotateBy.UTC().Format(time.DateOnly)),
		Message: fmt.Sprintf("Access key %s of credential %s was %s %d days ago; keys are rotated every %d days. In IAM, create a new access key for its user; "+
			"give it to the credential (`sluice credential rotate %s --secret-from-env VAR`, or Edit in the console); then deactivate and delete the old key.",
			key.GetAccessKeyId(), n.ID, how, age, s.cfg.Health.KeyRotationDays, n.ID),
		Credential: name, Reason: "KEY_ROTATION_DUE",
	}
	data, err := json.Marshal(map[string]any{"credential": name, "access_key_id": key.GetAccessKeyId(),
		"secret_set_time": set.UTC().Format(time.RFC3339), "rotate_by": rotateBy.UTC().Format(time.RFC3339), "age_days": age})
	if err != nil {
		return err
	}
	return s.settleHealth(ctx, subject, "KEY_ROTATION_DUE", warning,
		&pendingEvent{t: deliveryv1.EventType_EVENT_TYPE_CREDENTIAL_EXPIRING, credential: name, data: data})
}
