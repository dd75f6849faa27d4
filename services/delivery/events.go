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
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/eventbridge"
	ebtypes "github.com/aws/aws-sdk-go-v2/service/eventbridge/types"
	"github.com/aws/aws-sdk-go-v2/service/sns"
	snstypes "github.com/aws/aws-sdk-go-v2/service/sns/types"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	credentialv1 "github.com/sluicehq/sluice/gen/sluice/credential/v1"
	deliveryv1 "github.com/sluicehq/sluice/gen/sluice/delivery/v1"
	"github.com/sluicehq/sluice/pkg/apierror"
	"github.com/sluicehq/sluice/pkg/lease"
	"github.com/sluicehq/sluice/pkg/resourcename"
	"github.com/sluicehq/sluice/pkg/resourcestore"
	"github.com/sluicehq/sluice/pkg/webhook"
)

// eventTypeNames are the event types as payloads and filters name them.
var eventTypeNames = map[deliveryv1.EventType]string{
	deliveryv1.EventType_EVENT_TYPE_DELIVERY_SUCCEEDED:    "delivery.succeeded",
	deliveryv1.EventType_EVENT_TYPE_DELIVERY_FAILED:       "delivery.failed",
	deliveryv1.EventType_EVENT_TYPE_DELIVERY_RESOLVED:     "delivery.resolved",
	deliveryv1.EventType_EVENT_TYPE_DESTINATION_UNHEALTHY: "destination.unhealthy",
	deliveryv1.EventType_EVENT_TYPE_CREDENTIAL_EXPIRING:   "credential.expiring",
}

func parseEventType(s string) (deliveryv1.EventType, bool) {
	for t, n := range eventTypeNames {
		if n == s {
			return t, true
		}
	}
	return 0, false
}

// eventsOf answers the events a move from at to target causes: an end,
// once. A failed delivery whose kept input expires does not fail again.
func eventsOf(at, target phase) []deliveryv1.EventType {
	if at == target {
		return nil
	}
	switch target {
	case phaseSucceeded:
		if at == phaseResolving {
			return []deliveryv1.EventType{deliveryv1.EventType_EVENT_TYPE_DELIVERY_SUCCEEDED, deliveryv1.EventType_EVENT_TYPE_DELIVERY_RESOLVED}
		}
		return []deliveryv1.EventType{deliveryv1.EventType_EVENT_TYPE_DELIVERY_SUCCEEDED}
	case phaseFailed, phaseFailedKept:
		if at == phaseFailedKept {
			return nil
		}
		return []deliveryv1.EventType{deliveryv1.EventType_EVENT_TYPE_DELIVERY_FAILED}
	}
	return nil
}

// eventBody is the JSON every target receives. For a delivery's event,
// data.delivery is the delivery as GetDelivery answers it (proto field
// names), with its objects (keys, rows, bytes, checksums) or its error and
// workflow.
type eventBody struct {
	ID        string          `json:"id"`
	Type      string          `json:"type"`
	Timestamp string          `json:"timestamp"`
	Data      json.RawMessage `json:"data"`
}

// deliveryData is the data of a delivery's event: the delivery as
// GetDelivery answers it, without which replica ran it.
func deliveryData(d *deliveryv1.Delivery) (json.RawMessage, error) {
	d = proto.Clone(d).(*deliveryv1.Delivery)
	d.ServiceInstance = ""
	delivery, err := protojson.MarshalOptions{UseProtoNames: true}.Marshal(d)
	if err != nil {
		return nil, err
	}
	return json.Marshal(map[string]json.RawMessage{"delivery": delivery})
}

// pendingEvent is one event to write: its type, what it is about, and
// its data.
type pendingEvent struct {
	t                                 deliveryv1.EventType
	delivery, destination, credential string
	data                              json.RawMessage
}

// writeEvents writes, in tx, the events of a move from at to target of
// d, each with one send per subscription that wants it; none when no
// subscription does. It answers how many it wrote.
func (s *Service) writeEvents(ctx context.Context, tx *sql.Tx, at, target phase, d *deliveryv1.Delivery) (int, error) {
	types := eventsOf(at, target)
	if len(types) == 0 {
		return 0, nil
	}
	parent := parentOf(d.GetName())
	subs, err := s.store.SubscribersIn(ctx, tx, parent, d.GetDestination())
	if err != nil {
		return 0, err
	}
	var data json.RawMessage // made only when a subscription wants an event
	n := 0
	for _, t := range types {
		if !slices.ContainsFunc(subs, func(sub *deliveryv1.Subscription) bool { return slices.Contains(sub.GetEventTypes(), t) }) {
			continue
		}
		if data == nil {
			if data, err = deliveryData(d); err != nil {
				return n, fmt.Errorf("event of %s: %w", d.GetName(), err)
			}
		}
		wrote, err := s.writeEventFor(ctx, tx, parent, subs, pendingEvent{t: t, delivery: d.GetName(), destination: d.GetDestination(), data: data})
		if err != nil {
			return n, err
		}
		if wrote {
			n++
		}
	}
	return n, nil
}

// writeEvent writes e in tx with a send for each subscription of parent
// that wants it (those of its destination, or of the whole environment),
// and reports whether any did.
func (s *Service) writeEvent(ctx context.Context, tx *sql.Tx, parent string, e pendingEvent) (bool, error) {
	subs, err := s.store.SubscribersIn(ctx, tx, parent, e.destination)
	if err != nil {
		return false, err
	}
	return s.writeEventFor(ctx, tx, parent, subs, e)
}

// writeEventFor is writeEvent with the subscriptions of parent and the
// event's destination read already.
func (s *Service) writeEventFor(ctx context.Context, tx *sql.Tx, parent string, subs []*deliveryv1.Subscription, e pendingEvent) (bool, error) {
	now := time.Now()
	var sends []*deliveryv1.EventSend
	for _, sub := range subs {
		if slices.Contains(sub.GetEventTypes(), e.t) {
			sends = append(sends, &deliveryv1.EventSend{Subscription: sub.GetName(),
				State: deliveryv1.EventSendState_EVENT_SEND_STATE_PENDING, NextAttemptTime: timestamppb.New(now)})
		}
	}
	if len(sends) == 0 {
		return false, nil
	}
	id := "e" + strings.TrimPrefix(newID(now), "d")
	payload, err := json.Marshal(eventBody{ID: id, Type: eventTypeNames[e.t], Timestamp: now.UTC().Format(time.RFC3339Nano), Data: e.data})
	if err != nil {
		return false, err
	}
	ev := &deliveryv1.Event{Name: parent + "/" + events + "/" + id, Id: id, Type: e.t, Delivery: e.delivery,
		Destination: e.destination, Credential: e.credential, Payload: string(payload), Sends: sends}
	if err := s.store.Events.Creating(parent, ev)(ctx, tx); err != nil {
		return false, err
	}
	return true, nil
}

// wakeSender tells this replica's sender that events are waiting.
func (s *Service) wakeSender() {
	select {
	case s.eventWake <- struct{}{}:
	default:
	}
}

// kindEvents is the sending of events, held by one replica at a time.
const kindEvents = "events"

// sendEvents sends due events for as long as this replica holds the
// sender's lease: at once when this replica wrote some, else every
// Events.Poll. A replica that stops frees the lease for another; one
// that dies loses it after LeaseTTL, and what it was sending is sent
// again (at least once; receivers de-duplicate by id).
func (s *Service) sendEvents(ctx context.Context, l *lease.Lease, log *slog.Logger) {
	kept, stop := l.Keep(ctx)
	for kept.Err() == nil {
		n, err := s.sendDue(kept, log)
		if err != nil && kept.Err() == nil {
			log.WarnContext(kept, "send events", slog.String("error", err.Error()))
		}
		wait := s.cfg.Events.Poll
		if n == eventBatch {
			wait = 0
		} else if next, err := s.store.NextDue(kept); err == nil && !next.IsZero() {
			wait = min(wait, max(time.Until(next), 0))
		}
		select {
		case <-kept.Done():
		case <-s.eventWake:
		case <-time.After(wait):
		}
	}
	stop()
	if ctx.Err() != nil && !errors.Is(context.Cause(kept), lease.ErrLost) {
		// Stopping: hand the sending to another replica now rather than
		// after the lease runs out.
		if err := l.Again(context.WithoutCancel(ctx), 0); err != nil && !errors.Is(err, lease.ErrLost) {
			log.Warn("free the event sender", slog.String("error", err.Error()))
		}
	}
}

// eventBatch is how many events one pass takes; eventParallel how many it
// sends at once, so that one slow endpoint does not hold the others.
const (
	eventBatch    = 64
	eventParallel = 8
)

// sendDue sends the sends that are due of up to eventBatch events, and
// answers how many events it took.
func (s *Service) sendDue(ctx context.Context, log *slog.Logger) (int, error) {
	due, err := s.store.DueEvents(ctx, time.Now(), eventBatch)
	if err != nil {
		return 0, err
	}
	var (
		wg    sync.WaitGroup
		slots = make(chan struct{}, eventParallel)
		mu    sync.Mutex
		errs  []error
	)
	for _, ev := range due {
		slots <- struct{}{}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-slots }()
			if err := s.sendEvent(ctx, ev, log); err != nil {
				mu.Lock()
				errs = append(errs, err)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	return len(due), errors.Join(errs...)
}

// tried is one attempt's outcome for one subscription.
type tried struct {
	subscription string
	attempt      *deliveryv1.EventAttempt
	// gone is a subscription that no longer exists: the send is given up.
	gone bool
}

// maxAttemptsKept bounds the attempts an event keeps per subscription.
const maxAttemptsKept = 20

// sendEvent makes the attempts of ev that are due and records them, with
// each subscription's state, in one transaction fenced by the sender's
// lease.
func (s *Service) sendEvent(ctx context.Context, ev *deliveryv1.Event, log *slog.Logger) error {
	now := time.Now()
	var results []tried
	for _, snd := range ev.GetSends() {
		if snd.GetState() != deliveryv1.EventSendState_EVENT_SEND_STATE_PENDING || snd.GetNextAttemptTime().AsTime().After(now) {
			continue
		}
		results = append(results, s.attempt(ctx, ev, snd.GetSubscription()))
	}
	if len(results) == 0 || ctx.Err() != nil {
		return nil
	}
	window := s.cfg.Events.RetryWindow
	var also []resourcestore.Also
	for _, r := range results {
		if !r.gone {
			also = append(also, s.recordAttempt(r))
		}
	}
	_, err := s.store.Events.Update(ctx, ev.GetName(), "", func(e *deliveryv1.Event) error {
		for _, r := range results {
			i := slices.IndexFunc(e.GetSends(), func(x *deliveryv1.EventSend) bool { return x.GetSubscription() == r.subscription })
			if i < 0 {
				continue
			}
			snd := e.GetSends()[i]
			snd.AttemptCount++
			snd.Attempts = append(snd.Attempts, r.attempt)
			if len(snd.Attempts) > maxAttemptsKept {
				snd.Attempts = snd.Attempts[len(snd.Attempts)-maxAttemptsKept:]
			}
			switch {
			case r.attempt.GetOk():
				snd.State, snd.NextAttemptTime = deliveryv1.EventSendState_EVENT_SEND_STATE_SENT, nil
			case r.gone || now.Sub(e.GetCreateTime().AsTime()) > window:
				snd.State, snd.NextAttemptTime = deliveryv1.EventSendState_EVENT_SEND_STATE_GAVE_UP, nil
			default:
				snd.NextAttemptTime = timestamppb.New(now.Add(s.backoff(int(snd.AttemptCount))))
			}
		}
		return nil
	}, also...)
	if err != nil {
		return fmt.Errorf("record the sending of %s: %w", ev.GetName(), err)
	}
	for _, r := range results {
		if !r.attempt.GetOk() {
			log.InfoContext(ctx, "an event was not sent", slog.String("event", ev.GetName()), slog.String("subscription", r.subscription),
				slog.Int("status", int(r.attempt.GetStatusCode())), slog.String("error", r.attempt.GetError()))
		}
	}
	return nil
}

// backoff answers the pause after the n-th failed attempt: RetryInitial
// doubled each time up to RetryMax, with jitter in its upper half.
func (s *Service) backoff(n int) time.Duration {
	d := s.cfg.Events.RetryInitial
	for i := 1; i < n && d < s.cfg.Events.RetryMax; i++ {
		d *= 2
	}
	d = min(d, s.cfg.Events.RetryMax)
	return d/2 + rand.N(d/2+1)
}

// recordAttempt answers the subscription's side of an attempt: its
// consecutive failures and state, and the notification it raises when it
// starts FAILING.
func (s *Service) recordAttempt(r tried) resourcestore.Also {
	return func(ctx context.Context, tx *sql.Tx) error {
		var (
			failing bool
			sub     *deliveryv1.Subscription
		)
		err := s.store.Subscriptions.Updating(r.subscription, "", func(x *deliveryv1.Subscription) error {
			if r.attempt.GetOk() {
				x.ConsecutiveFailures, x.State, x.LastError, x.FailingSince = 0, deliveryv1.SubscriptionState_SUBSCRIPTION_STATE_ACTIVE, "", nil
				return nil
			}
			x.ConsecutiveFailures++
			x.LastError = r.attempt.GetError()
			if x.GetState() != deliveryv1.SubscriptionState_SUBSCRIPTION_STATE_FAILING && int(x.ConsecutiveFailures) >= s.cfg.Events.FailingAfter {
				x.State, x.FailingSince, failing = deliveryv1.SubscriptionState_SUBSCRIPTION_STATE_FAILING, timestamppb.Now(), true
			}
			return nil
		}, &sub)(ctx, tx)
		if errors.Is(err, apierror.ErrNotFound) {
			return nil // deleted while its event was being sent
		}
		if err != nil || !failing {
			return err
		}
		n := s.failingNotification(sub)
		if n == nil {
			return nil
		}
		return s.store.Notifications.Creating(parentOf(sub.GetName()), n)(ctx, tx)
	}
}

// failingNotification is the WARNING a subscription raises when its
// events stop getting through.
func (s *Service) failingNotification(sub *deliveryv1.Subscription) *deliveryv1.Notification {
	n, err := resourcename.Parse(sub.GetName(), subscriptions)
	if err != nil {
		return nil
	}
	return &deliveryv1.Notification{
		Name: n.Parent.String() + "/" + notifications + "/" + newID(time.Now()), Severity: deliveryv1.Severity_SEVERITY_WARNING,
		Title: fmt.Sprintf("Events to subscription %s are not getting through", n.ID),
		Message: fmt.Sprintf("The last %d attempts to send to its %s failed: %s. Sluice keeps trying each event for %s; fix the endpoint or its credential, or pause the subscription.",
			sub.GetConsecutiveFailures(), targetField(sub), sub.GetLastError(), s.cfg.Events.RetryWindow),
		Subscription: sub.GetName(), Destination: sub.GetDestination(),
	}
}

// maxErrorText bounds an attempt's stored error.
const maxErrorText = 500

// attempt sends ev to one subscription's target.
func (s *Service) attempt(ctx context.Context, ev *deliveryv1.Event, subscription string) tried {
	start := time.Now()
	r := tried{subscription: subscription, attempt: &deliveryv1.EventAttempt{Time: timestamppb.New(start)}}
	fail := func(err error) tried {
		msg := err.Error()
		if len(msg) > maxErrorText {
			msg = strings.ToValidUTF8(msg[:maxErrorText], "") + "…"
		}
		r.attempt.Error = msg
		r.attempt.DurationMs = time.Since(start).Milliseconds()
		return r
	}
	sub, err := s.store.Subscriptions.Get(ctx, subscription)
	if errors.Is(err, apierror.ErrNotFound) {
		r.gone = true
		return fail(errors.New("the subscription was deleted"))
	}
	if err != nil {
		return fail(err)
	}
	body := []byte(ev.GetPayload())
	typ := eventTypeNames[ev.GetType()]
	switch t := sub.GetTarget().(type) {
	case *deliveryv1.Subscription_Webhook:
		key, err := s.webhookKey(ctx, subscription)
		if err != nil {
			return fail(err)
		}
		ans, err := s.webhooks.Send(ctx, t.Webhook.GetUrl(), key, ev.GetId(), start, body)
		r.attempt.StatusCode = int32(ans.Status)
		if err != nil {
			return fail(err)
		}
	case *deliveryv1.Subscription_Sns:
		cfg, region, err := s.targetAccess(ctx, t.Sns.GetCredential())
		if err != nil {
			return fail(err)
		}
		in := &sns.PublishInput{TopicArn: aws.String(t.Sns.GetTopicArn()), Message: aws.String(ev.GetPayload()),
			MessageAttributes: map[string]snstypes.MessageAttributeValue{
				"type": {DataType: aws.String("String"), StringValue: aws.String(typ)},
				"id":   {DataType: aws.String("String"), StringValue: aws.String(ev.GetId())},
			}}
		if strings.HasSuffix(t.Sns.GetTopicArn(), ".fifo") {
			in.MessageGroupId, in.MessageDeduplicationId = aws.String(groupOf(ev)), aws.String(ev.GetId())
		}
		if _, err := s.cfg.AWS.SNS(cfg, region).Publish(ctx, in); err != nil {
			return fail(err)
		}
	case *deliveryv1.Subscription_Sqs:
		cfg, region, err := s.targetAccess(ctx, t.Sqs.GetCredential())
		if err != nil {
			return fail(err)
		}
		in := &sqs.SendMessageInput{QueueUrl: aws.String(t.Sqs.GetQueueUrl()), MessageBody: aws.String(ev.GetPayload()),
			MessageAttributes: map[string]sqstypes.MessageAttributeValue{
				"type": {DataType: aws.String("String"), StringValue: aws.String(typ)},
				"id":   {DataType: aws.String("String"), StringValue: aws.String(ev.GetId())},
			}}
		if strings.HasSuffix(t.Sqs.GetQueueUrl(), ".fifo") {
			in.MessageGroupId, in.MessageDeduplicationId = aws.String(groupOf(ev)), aws.String(ev.GetId())
		}
		if _, err := s.cfg.AWS.SQS(cfg, region).SendMessage(ctx, in); err != nil {
			return fail(err)
		}
	case *deliveryv1.Subscription_Eventbridge:
		cfg, region, err := s.targetAccess(ctx, t.Eventbridge.GetCredential())
		if err != nil {
			return fail(err)
		}
		out, err := s.cfg.AWS.EventBridge(cfg, region).PutEvents(ctx, &eventbridge.PutEventsInput{Entries: []ebtypes.PutEventsRequestEntry{{
			EventBusName: aws.String(t.Eventbridge.GetEventBus()), Source: aws.String("sluice"), DetailType: aws.String(typ),
			Detail: aws.String(ev.GetPayload()), Time: aws.Time(ev.GetCreateTime().AsTime()),
		}}})
		if err != nil {
			return fail(err)
		}
		if out.FailedEntryCount > 0 && len(out.Entries) > 0 {
			return fail(fmt.Errorf("EventBridge refused the event: %s: %s", aws.ToString(out.Entries[0].ErrorCode), aws.ToString(out.Entries[0].ErrorMessage)))
		}
	default:
		return fail(errors.New("the subscription has no target"))
	}
	r.attempt.Ok = true
	r.attempt.DurationMs = time.Since(start).Milliseconds()
	return r
}

// groupOf is the FIFO message group of an event: its destination's, so
// that one destination's events arrive in order.
func groupOf(ev *deliveryv1.Event) string {
	if n, err := resourcename.Parse(ev.GetDestination(), "destinations"); err == nil {
		return n.ID
	}
	return "sluice"
}

// webhookKey opens a webhook subscription's sealed secret.
func (s *Service) webhookKey(ctx context.Context, subscription string) ([]byte, error) {
	sealed, err := s.store.Secret(ctx, subscription)
	if err != nil {
		return nil, err
	}
	if sealed == nil || s.sealer == nil {
		return nil, errors.New("the subscription has no signing secret: set one")
	}
	secret, err := s.sealer.Open(ctx, sealed, subscription)
	if err != nil {
		return nil, errors.New("the signing secret cannot be opened: set it again")
	}
	return webhook.ParseSecret(string(secret))
}

// targetAccess mints access through a subscription's credential, as for a
// bucket: the credential's session and region.
func (s *Service) targetAccess(ctx context.Context, credential string) (aws.Config, string, error) {
	a, err := s.peers.Access.MintAccess(ctx, &credentialv1.MintAccessRequest{Name: credential})
	if err != nil {
		return aws.Config{}, "", fmt.Errorf("access through %s: %w", credential, err)
	}
	return s.cfg.AWS.Static(aws.Credentials{AccessKeyID: a.GetAccessKeyId(), SecretAccessKey: a.GetSecretAccessKey(),
		SessionToken: a.GetSessionToken()}), a.GetRegion(), nil
}
