package delivery

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"regexp"
	"slices"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/emptypb"
	"google.golang.org/protobuf/types/known/timestamppb"

	credentialv1 "github.com/sluicehq/sluice/gen/sluice/credential/v1"
	deliveryv1 "github.com/sluicehq/sluice/gen/sluice/delivery/v1"
	errorsv1 "github.com/sluicehq/sluice/gen/sluice/errors/v1"
	"github.com/sluicehq/sluice/pkg/apierror"
	"github.com/sluicehq/sluice/pkg/auth"
	"github.com/sluicehq/sluice/pkg/resourcename"
	"github.com/sluicehq/sluice/pkg/resourcestore"
	"github.com/sluicehq/sluice/pkg/validate"
	"github.com/sluicehq/sluice/pkg/webhook"
)

const (
	subscriptions = "subscriptions"
	events        = "events"
)

// subscriptionUpdatable are the update_mask paths UpdateSubscription takes.
var subscriptionUpdatable = []string{"display_name", "destination", "event_types", "paused",
	"webhook", "webhook.url", "webhook.secret", "sns", "sqs", "eventbridge"}

var (
	snsTopicARN = regexp.MustCompile(`^arn:aws[a-z-]*:sns:[a-z0-9-]+:[0-9]{12}:[A-Za-z0-9_-]{1,256}(\.fifo)?$`)
	busARN      = regexp.MustCompile(`^arn:aws[a-z-]*:events:[a-z0-9-]+:[0-9]{12}:event-bus/[A-Za-z0-9._/-]{1,256}$`)
	busName     = regexp.MustCompile(`^[A-Za-z0-9._/-]{1,256}$`)
	queuePath   = regexp.MustCompile(`^/[0-9]{12}/[A-Za-z0-9_-]{1,80}(\.fifo)?$`)
)

// checkSubscription collects what is wrong with sub as a whole, its fields
// named under prefix. The webhook secret is checked where it is set.
func (s *Service) checkSubscription(v *apierror.Violations, prefix string, parent resourcename.Parent, sub *deliveryv1.Subscription) {
	validate.DisplayName(v, prefix+"display_name", sub.GetDisplayName())
	if len(sub.GetEventTypes()) == 0 {
		v.Add(prefix+"event_types", "must name at least one event type: DELIVERY_SUCCEEDED, DELIVERY_FAILED, DELIVERY_RESOLVED, DESTINATION_UNHEALTHY or CREDENTIAL_EXPIRING")
	}
	seen := map[deliveryv1.EventType]bool{}
	for _, t := range sub.GetEventTypes() {
		if _, ok := eventTypeNames[t]; !ok {
			v.Add(prefix+"event_types", "%s is not an event type", t)
		} else if seen[t] {
			v.Add(prefix+"event_types", "%s appears twice", t)
		}
		seen[t] = true
	}
	if d := sub.GetDestination(); d != "" {
		if n, ok := validate.Name(v, prefix+"destination", d, "destinations"); ok && n.Parent != parent {
			v.Add(prefix+"destination", "must be a destination of %s", parent)
		}
	}
	credential := func(field, name string) {
		if n, ok := validate.Name(v, field, name, "credentials"); ok && n.Parent != parent {
			v.Add(field, "must be a credential of %s", parent)
		}
	}
	switch t := sub.GetTarget().(type) {
	case *deliveryv1.Subscription_Webhook:
		if err := s.webhooks.CheckURL(t.Webhook.GetUrl()); err != nil {
			v.Add(prefix+"webhook.url", "%v", err)
		}
	case *deliveryv1.Subscription_Sns:
		if !snsTopicARN.MatchString(t.Sns.GetTopicArn()) {
			v.Add(prefix+"sns.topic_arn", "must be an SNS topic ARN, arn:aws:sns:{region}:{account}:{topic}")
		}
		credential(prefix+"sns.credential", t.Sns.GetCredential())
	case *deliveryv1.Subscription_Sqs:
		if u, err := url.Parse(t.Sqs.GetQueueUrl()); err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || !queuePath.MatchString(u.Path) || u.User != nil {
			v.Add(prefix+"sqs.queue_url", "must be an SQS queue URL, https://sqs.{region}.amazonaws.com/{account}/{queue}")
		}
		credential(prefix+"sqs.credential", t.Sqs.GetCredential())
	case *deliveryv1.Subscription_Eventbridge:
		if b := t.Eventbridge.GetEventBus(); !busARN.MatchString(b) && !busName.MatchString(b) {
			v.Add(prefix+"eventbridge.event_bus", "must be an event bus name or ARN")
		}
		credential(prefix+"eventbridge.credential", t.Eventbridge.GetCredential())
	default:
		v.Add(prefix+"target", "must be one of webhook, sns, sqs or eventbridge")
	}
}

// checkReferences asks, as the caller, whether the destination and the
// credential a subscription names exist and are the caller's to use: a
// subscription sends only what its creator could see, through access its
// creator could use.
func (s *Service) checkReferences(ctx context.Context, prefix string, sub *deliveryv1.Subscription) error {
	var v apierror.Violations
	if d := sub.GetDestination(); d != "" {
		ok, err := s.mayView(ctx, d, map[string]bool{})
		if err != nil {
			return err
		}
		if !ok {
			v.Add(prefix+"destination", "%s does not exist", d)
		}
	}
	if c := targetCredential(sub); c != "" {
		_, err := s.peers.Credentials.GetCredential(ctx, &credentialv1.GetCredentialRequest{Name: c})
		switch status.Code(err) {
		case codes.OK:
		case codes.NotFound, codes.PermissionDenied:
			v.Add(prefix+targetField(sub)+".credential", "%s does not exist", c)
		default:
			return err
		}
	}
	return v.Err()
}

// targetCredential answers the credential an AWS target sends with.
func targetCredential(sub *deliveryv1.Subscription) string {
	switch t := sub.GetTarget().(type) {
	case *deliveryv1.Subscription_Sns:
		return t.Sns.GetCredential()
	case *deliveryv1.Subscription_Sqs:
		return t.Sqs.GetCredential()
	case *deliveryv1.Subscription_Eventbridge:
		return t.Eventbridge.GetCredential()
	}
	return ""
}

func targetField(sub *deliveryv1.Subscription) string {
	switch sub.GetTarget().(type) {
	case *deliveryv1.Subscription_Webhook:
		return "webhook"
	case *deliveryv1.Subscription_Sns:
		return "sns"
	case *deliveryv1.Subscription_Sqs:
		return "sqs"
	case *deliveryv1.Subscription_Eventbridge:
		return "eventbridge"
	}
	return "target"
}

// sealSecret checks a webhook secret and seals it for the subscription
// named name.
func (s *Service) sealSecret(ctx context.Context, field, name, secret string) ([]byte, error) {
	if _, err := webhook.ParseSecret(secret); err != nil {
		var v apierror.Violations
		v.Add(field, "%v", err)
		return nil, v.Err()
	}
	if s.sealer == nil {
		return nil, errors.New("no sealer: configure --master-key-file or --kms-key-id")
	}
	sealed, err := s.sealer.Seal(ctx, []byte(secret), name)
	if err != nil {
		return nil, fmt.Errorf("seal the webhook secret: %w", err)
	}
	return sealed, nil
}

// presentSubscription answers a subscription as callers see it: never a
// secret.
func presentSubscription(sub *deliveryv1.Subscription) *deliveryv1.Subscription {
	out := proto.Clone(sub).(*deliveryv1.Subscription)
	if w := out.GetWebhook(); w != nil {
		w.Secret = ""
	}
	return out
}

// CreateSubscription creates a subscription, its webhook secret sealed.
func (s *Service) CreateSubscription(ctx context.Context, req *deliveryv1.CreateSubscriptionRequest) (*deliveryv1.Subscription, error) {
	var v apierror.Violations
	parent, ok := validate.Parent(&v, "parent", req.GetParent())
	validate.ID(&v, "subscription_id", req.GetSubscriptionId())
	in := req.GetSubscription()
	if validate.Present(&v, "subscription", in != nil) && ok {
		s.checkSubscription(&v, "subscription.", parent, in)
		if w := in.GetWebhook(); w != nil && w.GetSecret() == "" {
			v.Add("subscription.webhook.secret", "is required: whsec_ and the base64 of 24 to 64 random bytes")
		}
	}
	if err := v.Err(); err != nil {
		return nil, err
	}
	if err := auth.Visible(ctx, parent.Tenant, req.GetParent()); err != nil {
		return nil, err
	}
	if err := s.checkReferences(ctx, "subscription.", in); err != nil {
		return nil, err
	}
	name := parent.Child(subscriptions, req.GetSubscriptionId()).String()
	sub := proto.Clone(in).(*deliveryv1.Subscription)
	sub.Name, sub.State, sub.LastError, sub.FailingSince, sub.ConsecutiveFailures = name, deliveryv1.SubscriptionState_SUBSCRIPTION_STATE_ACTIVE, "", nil, 0
	if w := sub.GetWebhook(); w != nil {
		sealed, err := s.sealSecret(ctx, "subscription.webhook.secret", name, w.GetSecret())
		if err != nil {
			return nil, err
		}
		w.Secret, w.SecretSet, w.SecretUpdateTime = "", true, timestamppb.Now()
		created, err := s.store.Subscriptions.Create(ctx, req.GetParent(), sub, s.store.SettingSecret(name, sealed))
		if err != nil {
			return nil, subscriptionExists(err, name)
		}
		return presentSubscription(created), nil
	}
	created, err := s.store.Subscriptions.Create(ctx, req.GetParent(), sub)
	if err != nil {
		return nil, subscriptionExists(err, name)
	}
	return presentSubscription(created), nil
}

func subscriptionExists(err error, name string) error {
	if errors.Is(err, apierror.ErrAlreadyExists) {
		return apierror.Wrap(err, codes.AlreadyExists, errorsv1.ErrorReason_ERROR_REASON_ALREADY_EXISTS,
			name+" already exists").With("resource", name)
	}
	return err
}

// GetSubscription answers one subscription.
func (s *Service) GetSubscription(ctx context.Context, req *deliveryv1.GetSubscriptionRequest) (*deliveryv1.Subscription, error) {
	if err := named(ctx, "name", req.GetName(), subscriptions); err != nil {
		return nil, err
	}
	sub, err := getVisible(ctx, s, s.store.Subscriptions, req.GetName())
	if err != nil {
		return nil, err
	}
	return presentSubscription(sub), nil
}

// unfiltered lets a request without a filter be listed as one with.
type unfiltered struct {
	*deliveryv1.ListSubscriptionsRequest
}

func (unfiltered) GetFilter() string { return "" }

// ListSubscriptions answers a page of subscriptions, newest name first.
func (s *Service) ListSubscriptions(ctx context.Context, req *deliveryv1.ListSubscriptionsRequest) (*deliveryv1.ListSubscriptionsResponse, error) {
	items, next, err := listVisible(ctx, s, s.store.Subscriptions, unfiltered{req})
	if err != nil {
		return nil, err
	}
	for i, sub := range items {
		items[i] = presentSubscription(sub)
	}
	return &deliveryv1.ListSubscriptionsResponse{Subscriptions: items, NextPageToken: next}, nil
}

// UpdateSubscription changes the masked fields; the result is checked as a
// whole, and a new webhook secret is sealed in the same transaction.
func (s *Service) UpdateSubscription(ctx context.Context, req *deliveryv1.UpdateSubscriptionRequest) (*deliveryv1.Subscription, error) {
	var v apierror.Violations
	in := req.GetSubscription()
	var n resourcename.Name
	if validate.Present(&v, "subscription", in != nil) {
		n, _ = validate.Name(&v, "subscription.name", in.GetName(), subscriptions)
	}
	paths := validate.UpdateMask(&v, req.GetUpdateMask(), subscriptionUpdatable)
	if err := v.Err(); err != nil {
		return nil, err
	}
	if err := auth.Visible(ctx, n.Tenant, in.GetName()); err != nil {
		return nil, err
	}
	if _, err := getVisible(ctx, s, s.store.Subscriptions, in.GetName()); err != nil {
		return nil, err
	}
	name := in.GetName()
	newSecret := slices.Contains(paths, "webhook.secret") || (slices.Contains(paths, "webhook") && in.GetWebhook().GetSecret() != "")
	var sealed []byte
	if newSecret {
		var err error
		if sealed, err = s.sealSecret(ctx, "subscription.webhook.secret", name, in.GetWebhook().GetSecret()); err != nil {
			return nil, err
		}
	}
	mutate := func(sub *deliveryv1.Subscription) error {
		var mv apierror.Violations
		hadWebhook := sub.GetWebhook() != nil
		for _, p := range paths {
			switch p {
			case "display_name":
				sub.DisplayName = in.GetDisplayName()
			case "destination":
				sub.Destination = in.GetDestination()
			case "event_types":
				sub.EventTypes = in.GetEventTypes()
			case "paused":
				sub.Paused = in.GetPaused()
			case "webhook":
				if in.GetWebhook() == nil {
					mv.Add("subscription.webhook", "must be set when update_mask names it")
					continue
				}
				old := sub.GetWebhook()
				sub.Target = &deliveryv1.Subscription_Webhook{Webhook: &deliveryv1.Webhook{Url: in.GetWebhook().GetUrl(),
					SecretSet: old.GetSecretSet(), SecretUpdateTime: old.GetSecretUpdateTime()}}
			case "webhook.url":
				if sub.GetWebhook() == nil {
					mv.Add("update_mask.paths", "webhook.url applies to webhook subscriptions only")
					continue
				}
				sub.GetWebhook().Url = in.GetWebhook().GetUrl()
			case "webhook.secret":
				if sub.GetWebhook() == nil {
					mv.Add("update_mask.paths", "webhook.secret applies to webhook subscriptions only")
				}
			case "sns":
				sub.Target = &deliveryv1.Subscription_Sns{Sns: in.GetSns()}
			case "sqs":
				sub.Target = &deliveryv1.Subscription_Sqs{Sqs: in.GetSqs()}
			case "eventbridge":
				sub.Target = &deliveryv1.Subscription_Eventbridge{Eventbridge: in.GetEventbridge()}
			}
		}
		if w := sub.GetWebhook(); w != nil {
			if sealed != nil {
				w.SecretSet, w.SecretUpdateTime = true, timestamppb.Now()
			}
			if !w.GetSecretSet() || (!hadWebhook && sealed == nil) {
				mv.Add("subscription.webhook.secret", "is required for a webhook: whsec_ and the base64 of 24 to 64 random bytes")
			}
			w.Secret = ""
		}
		s.checkSubscription(&mv, "subscription.", n.Parent, sub)
		return mv.Err()
	}
	var also []resourcestore.Also
	if sealed != nil {
		also = append(also, s.store.SettingSecret(name, sealed))
	}
	// The references are checked as the caller before the write; what
	// mutate built is checked again with them after, so that a change of
	// destination or credential is one the caller may make.
	probe := proto.Clone(in).(*deliveryv1.Subscription)
	if !slices.Contains(paths, "destination") {
		probe.Destination = ""
	}
	if !slices.ContainsFunc(paths, func(p string) bool { return p == "sns" || p == "sqs" || p == "eventbridge" }) {
		probe.Target = nil
	}
	if err := s.checkReferences(ctx, "subscription.", probe); err != nil {
		return nil, err
	}
	updated, err := s.store.Subscriptions.Update(ctx, name, req.GetEtag(), mutate, also...)
	if err != nil {
		return nil, storeError(err, name)
	}
	return presentSubscription(updated), nil
}

// storeError answers a store error of a named resource as callers get it.
func storeError(err error, name string) error {
	switch {
	case errors.Is(err, apierror.ErrNotFound):
		return apierror.NotFound(name)
	case errors.Is(err, apierror.ErrEtagMismatch):
		return apierror.Wrap(err, codes.Aborted, errorsv1.ErrorReason_ERROR_REASON_ETAG_MISMATCH,
			"the etag does not match: get "+name+" again").With("resource", name)
	}
	return err
}

// DeleteSubscription deletes a subscription and its secret. Events not yet
// sent to it are given up when their turn comes.
func (s *Service) DeleteSubscription(ctx context.Context, req *deliveryv1.DeleteSubscriptionRequest) (*emptypb.Empty, error) {
	if err := named(ctx, "name", req.GetName(), subscriptions); err != nil {
		return nil, err
	}
	if _, err := getVisible(ctx, s, s.store.Subscriptions, req.GetName()); err != nil {
		return nil, err
	}
	if err := s.store.Subscriptions.Delete(ctx, req.GetName(), req.GetEtag(), s.store.ForgettingSecret(req.GetName())); err != nil {
		return nil, storeError(err, req.GetName())
	}
	return &emptypb.Empty{}, nil
}

var (
	eventDestinationField = destinationField
	eventDeliveryField    = filterField{name: "delivery", column: "delivery", hint: `"<delivery name>"`,
		value: func(raw string, quoted bool) (any, bool) { return raw, quoted }}
	eventTypeField = filterField{name: "type", column: "type", hint: `"delivery.succeeded"|"delivery.failed"|"delivery.resolved"|"destination.unhealthy"|"credential.expiring"`,
		value: func(raw string, quoted bool) (any, bool) {
			t, ok := parseEventType(raw)
			return int32(t), ok && quoted
		}}
)

// GetEvent answers one event, when the caller may use its destination.
func (s *Service) GetEvent(ctx context.Context, req *deliveryv1.GetEventRequest) (*deliveryv1.Event, error) {
	if err := named(ctx, "name", req.GetName(), events); err != nil {
		return nil, err
	}
	return getVisible(ctx, s, s.store.Events, req.GetName())
}

// ListEvents answers a page of the events the caller may see, newest first.
func (s *Service) ListEvents(ctx context.Context, req *deliveryv1.ListEventsRequest) (*deliveryv1.ListEventsResponse, error) {
	items, next, err := listVisible(ctx, s, s.store.Events, req, eventDestinationField, eventDeliveryField, eventTypeField)
	if err != nil {
		return nil, err
	}
	return &deliveryv1.ListEventsResponse{Events: items, NextPageToken: next}, nil
}
