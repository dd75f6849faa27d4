package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/encoding/prototext"
	"google.golang.org/protobuf/types/known/fieldmaskpb"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/eventbridge"
	ebtypes "github.com/aws/aws-sdk-go-v2/service/eventbridge/types"
	"github.com/aws/aws-sdk-go-v2/service/iam"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/sns"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"

	credentialv1 "github.com/sluicehq/sluice/gen/sluice/credential/v1"
	deliveryv1 "github.com/sluicehq/sluice/gen/sluice/delivery/v1"
	destinationv1 "github.com/sluicehq/sluice/gen/sluice/destination/v1"
	"github.com/sluicehq/sluice/pkg/apierror"
	"github.com/sluicehq/sluice/pkg/auth"
	"github.com/sluicehq/sluice/pkg/awsclient"
	"github.com/sluicehq/sluice/pkg/deliverclient"
	"github.com/sluicehq/sluice/pkg/localserver"
	"github.com/sluicehq/sluice/pkg/testenv"
	"github.com/sluicehq/sluice/pkg/webhook"
)

// receiver is a webhook endpoint on 127.0.0.1 that checks each message's
// signature as a customer's receiver would.
type receiver struct {
	srv    *httptest.Server
	secret string
	key    []byte
	// status is what it answers (200 when 0).
	status atomic.Int32
	// hold, when set, makes the next arrival wait until it is closed.
	hold atomic.Pointer[chan struct{}]
	// held is told when an arrival waits on hold.
	held chan struct{}

	mu  sync.Mutex
	got []arrival
}

type arrival struct {
	path   string
	header http.Header
	body   []byte
	// verified is nil when the signature and timestamp check out.
	verified error
}

func startReceiver(t *testing.T) *receiver {
	t.Helper()
	key := make([]byte, 32)
	_, _ = rand.Read(key)
	r := &receiver{secret: webhook.SecretPrefix + base64.StdEncoding.EncodeToString(key), key: key, held: make(chan struct{}, 1)}
	r.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		body, _ := io.ReadAll(req.Body)
		r.mu.Lock()
		r.got = append(r.got, arrival{path: req.URL.Path, header: req.Header.Clone(), body: body, verified: webhook.Verify(r.key, req.Header, body, time.Now())})
		r.mu.Unlock()
		if h := r.hold.Swap(nil); h != nil {
			r.held <- struct{}{}
			select {
			case <-*h:
			case <-req.Context().Done():
			}
			return
		}
		if s := r.status.Load(); s != 0 {
			w.WriteHeader(int(s))
		}
	}))
	t.Cleanup(r.srv.Close)
	return r
}

// useSecret makes the receiver verify with secret instead of its own.
func (r *receiver) useSecret(t *testing.T, secret string) {
	t.Helper()
	key, err := webhook.ParseSecret(secret)
	if err != nil {
		t.Fatal(err)
	}
	r.mu.Lock()
	r.secret, r.key = secret, key
	r.mu.Unlock()
}

func (r *receiver) arrivals(path string) []arrival {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []arrival
	for _, a := range r.got {
		if a.path == path {
			out = append(out, a)
		}
	}
	return out
}

// waitArrivals waits up to 20 s for n arrivals at path.
func (r *receiver) waitArrivals(t *testing.T, path string, n int) []arrival {
	t.Helper()
	for range 200 {
		if got := r.arrivals(path); len(got) >= n {
			return got
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("%s received %d messages, want %d", path, len(r.arrivals(path)), n)
	return nil
}

// sentEvent is the JSON every target receives.
type sentEvent struct {
	ID        string `json:"id"`
	Type      string `json:"type"`
	Timestamp string `json:"timestamp"`
	Data      struct {
		Delivery struct {
			Name        string `json:"name"`
			Destination string `json:"destination"`
			Workflow    string `json:"workflow"`
			Objects     []struct {
				Key      string `json:"key"`
				Rows     string `json:"rows"`
				Checksum string `json:"checksum"`
				Kind     string `json:"kind"`
			} `json:"objects"`
			Error struct {
				Reason  string `json:"reason"`
				Message string `json:"message"`
			} `json:"error"`
		} `json:"delivery"`
	} `json:"data"`
}

func decodeEvent(t *testing.T, b []byte) sentEvent {
	t.Helper()
	var e sentEvent
	if err := json.Unmarshal(b, &e); err != nil {
		t.Fatalf("event body %s: %v", b, err)
	}
	return e
}

func webhookSubscription(url, secret, destination string, types ...deliveryv1.EventType) *deliveryv1.Subscription {
	return &deliveryv1.Subscription{Destination: destination, EventTypes: types,
		Target: &deliveryv1.Subscription_Webhook{Webhook: &deliveryv1.Webhook{Url: url, Secret: secret}}}
}

var (
	succeeded = deliveryv1.EventType_EVENT_TYPE_DELIVERY_SUCCEEDED
	failed    = deliveryv1.EventType_EVENT_TYPE_DELIVERY_FAILED
)

// fastEvents makes events go out and fail over within a test's patience,
// to a receiver on 127.0.0.1.
func fastEvents(c *serveConfig) {
	c.Delivery.Events.WebhookAllowPrivate, c.Delivery.Events.WebhookAllowHTTP = true, true
	c.Delivery.Events.RetryInitial, c.Delivery.Events.RetryMax = 100*time.Millisecond, 300*time.Millisecond
	c.Delivery.Events.FailingAfter, c.Delivery.Events.Poll = 3, 100*time.Millisecond
}

// Subscriptions are managed by administrators only, validated field by
// field, and never answer their secret.
func TestSubscriptionsRefuseBadInputAndHostileCallers(t *testing.T) {
	e := startDelivering(t, fastEvents)
	ctx := context.Background()
	evs := deliveryv1.NewEventServiceClient(e.r.conns["delivery"])
	rcv := startReceiver(t)
	dest := e.destination(t, "hooks", &destinationv1.Destination{Format: csvFormat()})
	good := func() *deliveryv1.Subscription {
		return webhookSubscription(rcv.srv.URL, rcv.secret, dest.GetName(), succeeded)
	}
	create := func(sub *deliveryv1.Subscription, as grpc.CallOption) error {
		_, err := evs.CreateSubscription(ctx, &deliveryv1.CreateSubscriptionRequest{Parent: production, SubscriptionId: "hook", Subscription: sub}, as)
		return err
	}
	for name, tc := range map[string]struct {
		as   grpc.CallOption
		code codes.Code
	}{
		"a user without a policy":      {e.r.token("acme"), codes.PermissionDenied},
		"another tenant's admin":       {e.r.token("globex", auth.PolicyAdministrator), codes.NotFound},
		"a user restricted to limited": {e.r.token("acme", auth.PolicyRestrictPII), codes.PermissionDenied},
	} {
		if err := create(good(), tc.as); apierror.FromStatus(err).Code != tc.code {
			t.Errorf("%s: %v, want %s", name, err, tc.code)
		}
	}
	bad := map[string]func(*deliveryv1.Subscription){
		"subscription.webhook.secret": func(s *deliveryv1.Subscription) { s.GetWebhook().Secret = "" },
		"subscription.event_types":    func(s *deliveryv1.Subscription) { s.EventTypes = nil },
		"subscription.destination": func(s *deliveryv1.Subscription) {
			s.Destination = "tenants/acme/environments/sandbox/destinations/hooks"
		},
		"subscription.webhook.url": func(s *deliveryv1.Subscription) { s.GetWebhook().Url = "ftp://example.com/" },
		"subscription.target":      func(s *deliveryv1.Subscription) { s.Target = nil },
		"subscription.sqs.queue_url": func(s *deliveryv1.Subscription) {
			s.Target = &deliveryv1.Subscription_Sqs{Sqs: &deliveryv1.SqsQueue{QueueUrl: "not a url", Credential: e.cred}}
		},
		"subscription.sns.credential": func(s *deliveryv1.Subscription) {
			s.Target = &deliveryv1.Subscription_Sns{Sns: &deliveryv1.SnsTopic{TopicArn: "arn:aws:sns:us-east-1:123456789012:t", Credential: production + "/credentials/nope"}}
		},
	}
	for field, spoil := range bad {
		sub := good()
		spoil(sub)
		err := create(sub, e.admin)
		if got := apierror.FromStatus(err); got.Code != codes.InvalidArgument || got.Fields()[field] == "" {
			t.Errorf("%s spoiled: %v, want a violation of it", field, err)
		}
	}
	sub, err := evs.CreateSubscription(ctx, &deliveryv1.CreateSubscriptionRequest{Parent: production, SubscriptionId: "hook", Subscription: good()}, e.admin)
	if err != nil {
		t.Fatal(err)
	}
	got, err := evs.GetSubscription(ctx, &deliveryv1.GetSubscriptionRequest{Name: sub.GetName()}, e.admin)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []*deliveryv1.Subscription{sub, got} {
		if !s.GetWebhook().GetSecretSet() || s.GetWebhook().GetSecret() != "" || strings.Contains(prototext.Format(s), rcv.secret[6:]) {
			t.Fatalf("a subscription as answered: %v", s)
		}
	}
	// An update that changes the URL keeps the stored secret; a new one is
	// checked.
	upd := &deliveryv1.Subscription{Name: sub.GetName(), Target: &deliveryv1.Subscription_Webhook{Webhook: &deliveryv1.Webhook{Url: rcv.srv.URL + "/moved", Secret: "whsec_short"}}}
	_, err = evs.UpdateSubscription(ctx, &deliveryv1.UpdateSubscriptionRequest{Subscription: upd, UpdateMask: mask("webhook.secret")}, e.admin)
	if apierror.FromStatus(err).Fields()["subscription.webhook.secret"] == "" {
		t.Fatalf("a short secret: %v", err)
	}
	moved, err := evs.UpdateSubscription(ctx, &deliveryv1.UpdateSubscriptionRequest{Subscription: upd, UpdateMask: mask("webhook.url")}, e.admin)
	if err != nil || moved.GetWebhook().GetUrl() != rcv.srv.URL+"/moved" || !moved.GetWebhook().GetSecretSet() {
		t.Fatalf("move the URL: %v %v", moved, err)
	}
	if _, err := evs.DeleteSubscription(ctx, &deliveryv1.DeleteSubscriptionRequest{Name: sub.GetName()}, e.r.token("acme")); apierror.FromStatus(err).Code != codes.PermissionDenied {
		t.Fatalf("a user deleting: %v", err)
	}
	// Without the operator's permission, a loopback endpoint is refused.
	strict := startServe(t)
	_, err = deliveryv1.NewEventServiceClient(strict.conns["delivery"]).CreateSubscription(ctx, &deliveryv1.CreateSubscriptionRequest{
		Parent: production, SubscriptionId: "hook", Subscription: webhookSubscription("https://127.0.0.1:1/hook", rcv.secret, "", succeeded)},
		strict.token("acme", auth.PolicyAdministrator))
	if f := apierror.FromStatus(err).Fields()["subscription.webhook.url"]; !strings.Contains(f, "private, loopback") {
		t.Fatalf("a loopback webhook without --webhook-allow-private: %v", err)
	}
}

// A delivery's end reaches the webhooks that want it, signed, with the
// delivery's objects or its error; one whose endpoint keeps failing is
// marked FAILING with a notification, and recovers by itself.
func TestWebhookEventsSignedRetriedAndListed(t *testing.T) {
	e := startDelivering(t, fastEvents)
	ctx := context.Background()
	evs := deliveryv1.NewEventServiceClient(e.r.conns["delivery"])
	flows := deliveryv1.NewWorkflowServiceClient(e.r.conns["delivery"])
	rcv := startReceiver(t)
	dest := e.destination(t, "hooks", &destinationv1.Destination{Format: csvFormat(), SuccessFile: true})
	broken := e.destination(t, "broken", &destinationv1.Destination{Format: csvFormat(), BucketOverride: "no-such-bucket-" + strings.ToLower(t.Name()[:8])})
	subscribe := func(id string, sub *deliveryv1.Subscription) *deliveryv1.Subscription {
		out, err := evs.CreateSubscription(ctx, &deliveryv1.CreateSubscriptionRequest{Parent: production, SubscriptionId: id, Subscription: sub}, e.admin)
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	all := subscribe("all", webhookSubscription(rcv.srv.URL+"/all", rcv.secret, "", succeeded, failed))
	only := subscribe("only", webhookSubscription(rcv.srv.URL+"/only", rcv.secret, dest.GetName(), succeeded))

	d, err := e.deliver(ctx, dest.GetName(), reader(t, customerBatches(t, 1000, 500)), e.admin, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, path := range []string{"/all", "/only"} {
		a := rcv.waitArrivals(t, path, 1)[0]
		if a.verified != nil {
			t.Fatalf("%s: the signature does not verify: %v", path, a.verified)
		}
		ev := decodeEvent(t, a.body)
		if ev.Type != "delivery.succeeded" || ev.ID != a.header.Get("webhook-id") || ev.Data.Delivery.Name != d.GetName() || len(ev.Data.Delivery.Objects) != len(d.GetObjects()) {
			t.Fatalf("%s received %s", path, a.body)
		}
		for i, o := range ev.Data.Delivery.Objects {
			if o.Key != d.GetObjects()[i].GetKey() || o.Checksum != d.GetObjects()[i].GetChecksum() || (o.Rows == "") != (o.Kind == "success") {
				t.Fatalf("%s: object %d is %+v, delivered %v", path, i, o, d.GetObjects()[i])
			}
		}
	}
	listed, err := evs.ListEvents(ctx, &deliveryv1.ListEventsRequest{Parent: production, Filter: `delivery = "` + d.GetName() + `"`}, e.admin)
	if err != nil {
		t.Fatal(err)
	}
	if len(listed.GetEvents()) != 1 || len(listed.GetEvents()[0].GetSends()) != 2 {
		t.Fatalf("events of the delivery: %v", listed)
	}
	ev := listed.GetEvents()[0]
	if ev.GetId() != rcv.arrivals("/all")[0].header.Get("webhook-id") || ev.GetPayload() != string(rcv.arrivals("/all")[0].body) {
		t.Fatalf("the listed event is not the one sent: %v", ev)
	}
	// Sent ends are recorded a moment after the receiver answers.
	waitEvent(t, evs, e.admin, ev.GetName(), func(ev *deliveryv1.Event) bool {
		for _, s := range ev.GetSends() {
			if s.GetState() != deliveryv1.EventSendState_EVENT_SEND_STATE_SENT || len(s.GetAttempts()) != 1 || s.GetAttempts()[0].GetStatusCode() != 200 {
				return false
			}
		}
		return true
	})

	// The endpoint breaks; a delivery fails.
	rcv.status.Store(http.StatusServiceUnavailable)
	_, err = e.deliver(ctx, broken.GetName(), reader(t, customerBatches(t, 100, 100)), e.admin, nil)
	if err == nil {
		t.Fatal("a delivery to a bucket that does not exist succeeded")
	}
	failedDelivery := e.namedIn(t, err)
	for k := range 201 {
		if k == 200 {
			t.Fatal("the subscription was not marked FAILING")
		}
		s, err := evs.GetSubscription(ctx, &deliveryv1.GetSubscriptionRequest{Name: all.GetName()}, e.admin)
		if err != nil {
			t.Fatal(err)
		}
		if s.GetState() == deliveryv1.SubscriptionState_SUBSCRIPTION_STATE_FAILING {
			if s.GetConsecutiveFailures() < 3 || !strings.Contains(s.GetLastError(), "503") || s.GetFailingSince() == nil {
				t.Fatalf("a failing subscription: %v", s)
			}
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	notes, err := flows.ListNotifications(ctx, &deliveryv1.ListNotificationsRequest{Parent: production}, e.admin)
	if err != nil {
		t.Fatal(err)
	}
	i := slices.IndexFunc(notes.GetNotifications(), func(n *deliveryv1.Notification) bool { return n.GetSubscription() == all.GetName() })
	if i < 0 || notes.GetNotifications()[i].GetSeverity() != deliveryv1.Severity_SEVERITY_WARNING || !strings.Contains(notes.GetNotifications()[i].GetMessage(), "503") {
		t.Fatalf("no WARNING for the failing subscription among %v", notes.GetNotifications())
	}
	// A user without a policy sees the delivery's notification but not the
	// environment-wide subscription's.
	userNotes, err := flows.ListNotifications(ctx, &deliveryv1.ListNotificationsRequest{Parent: production}, e.r.token("acme"))
	if err != nil {
		t.Fatal(err)
	}
	if slices.ContainsFunc(userNotes.GetNotifications(), func(n *deliveryv1.Notification) bool { return n.GetSubscription() != "" }) {
		t.Fatal("a user without a policy sees a subscription's notification")
	}

	rcv.status.Store(0)
	failures := rcv.waitArrivals(t, "/all", 5) // the success, three or more failures, then the one that got through
	var fe *deliveryv1.Event
	waitEventOf := func() {
		for range 200 {
			l, err := evs.ListEvents(ctx, &deliveryv1.ListEventsRequest{Parent: production, Filter: `type = "delivery.failed"`}, e.admin)
			if err != nil {
				t.Fatal(err)
			}
			if len(l.GetEvents()) == 1 && l.GetEvents()[0].GetSends()[0].GetState() == deliveryv1.EventSendState_EVENT_SEND_STATE_SENT {
				fe = l.GetEvents()[0]
				return
			}
			time.Sleep(100 * time.Millisecond)
		}
		t.Fatal("the failure's event was not sent once the endpoint recovered")
	}
	waitEventOf()
	snd := fe.GetSends()[0]
	if len(fe.GetSends()) != 1 || snd.GetSubscription() != all.GetName() || snd.GetAttemptCount() < 4 {
		t.Fatalf("the failure's event: %v", fe)
	}
	for k, a := range snd.GetAttempts() {
		last := k == len(snd.GetAttempts())-1
		if a.GetOk() != last || (!last && a.GetStatusCode() != 503) || (last && a.GetStatusCode() != 200) {
			t.Fatalf("attempt %d: %v", k, a)
		}
	}
	sent := decodeEvent(t, failures[len(failures)-1].body)
	if sent.Type != "delivery.failed" || sent.Data.Delivery.Name != failedDelivery.GetName() || sent.Data.Delivery.Error.Reason == "" ||
		sent.Data.Delivery.Workflow != failedDelivery.GetName()+"/workflow" {
		t.Fatalf("the failure's event: %s", failures[len(failures)-1].body)
	}
	ids := map[string]bool{}
	for _, a := range rcv.arrivals("/all") {
		ids[a.header.Get("webhook-id")] = true
	}
	if len(ids) != 2 {
		t.Fatalf("retries carried %d ids for 2 events", len(ids))
	}
	s, err := evs.GetSubscription(ctx, &deliveryv1.GetSubscriptionRequest{Name: all.GetName()}, e.admin)
	if err != nil || s.GetState() != deliveryv1.SubscriptionState_SUBSCRIPTION_STATE_ACTIVE || s.GetConsecutiveFailures() != 0 {
		t.Fatalf("after a send got through: %v %v", s, err)
	}
	if got := rcv.arrivals("/only"); len(got) != 1 {
		t.Fatalf("the subscription to one destination received %d events", len(got))
	}
	_ = only
}

func waitEvent(t *testing.T, evs deliveryv1.EventServiceClient, as grpc.CallOption, name string, ok func(*deliveryv1.Event) bool) *deliveryv1.Event {
	t.Helper()
	var last *deliveryv1.Event
	for range 200 {
		ev, err := evs.GetEvent(context.Background(), &deliveryv1.GetEventRequest{Name: name}, as)
		if err != nil {
			t.Fatal(err)
		}
		if last = ev; ok(ev) {
			return ev
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("event %s: %v", name, last)
	return nil
}

func mask(paths ...string) *fieldmaskpb.FieldMask { return &fieldmaskpb.FieldMask{Paths: paths} }

// The delivery service is killed while it sends an event (after the
// delivery's end was stored with its event, before the send was
// recorded): once it starts again, the event goes out again with the same
// id, and the receiver, de-duplicating by id, sees it once.
func TestEventSentAfterTheServiceIsKilledMidSend(t *testing.T) {
	m := testenv.SharedMinIO(t)
	p := startProcesses(t, m, testenv.NewBucket(t, m), localserver.SluiceOptions{Delivery: []string{
		"--webhook-allow-private", "--webhook-allow-http", "--event-retry-initial", "200ms", "--event-poll", "200ms"}})
	ctx := context.Background()
	cc, err := grpc.NewClient(p.sl.Addrs["delivery"], grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	evs := deliveryv1.NewEventServiceClient(cc)
	rcv := startReceiver(t)
	hold := make(chan struct{})
	rcv.hold.Store(&hold)
	if _, err := evs.CreateSubscription(ctx, &deliveryv1.CreateSubscriptionRequest{Parent: production, SubscriptionId: "hook",
		Subscription: webhookSubscription(rcv.srv.URL+"/hook", rcv.secret, "", succeeded)}, p.as); err != nil {
		t.Fatal(err)
	}
	dest := p.destination(t, "killed", nil)
	recs := customerBatches(t, 1000, 500)
	d, err := deliverclient.DeliverStream(ctx, p.delivs, &deliveryv1.DeliveryStart{Destination: dest.GetName(), OutputName: "out"},
		bytes.NewReader(ipcBytes(t, recs[0].Schema(), recs...)), deliverclient.Options{CallOptions: []grpc.CallOption{p.as}})
	if err != nil {
		t.Fatal(err)
	}
	select {
	case <-rcv.held:
	case <-time.After(20 * time.Second):
		t.Fatal("the event was not sent")
	}
	p.sl.Kill("delivery")
	close(hold)
	if err := p.sl.Start("delivery"); err != nil {
		t.Fatal(err)
	}
	got := rcv.waitArrivals(t, "/hook", 2)
	listed, err := evs.ListEvents(ctx, &deliveryv1.ListEventsRequest{Parent: production}, p.as)
	if err != nil {
		t.Fatal(err)
	}
	if len(listed.GetEvents()) != 1 {
		t.Fatalf("%d events for one delivery", len(listed.GetEvents()))
	}
	ev := waitEvent(t, evs, p.as, listed.GetEvents()[0].GetName(), func(ev *deliveryv1.Event) bool {
		return ev.GetSends()[0].GetState() == deliveryv1.EventSendState_EVENT_SEND_STATE_SENT
	})
	// The killed attempt was never recorded: the one that got through is
	// the only one the event shows.
	if n := ev.GetSends()[0].GetAttemptCount(); n != 1 {
		t.Fatalf("the event shows %d attempts", n)
	}
	time.Sleep(time.Second) // a third send would come within a poll or two
	got = rcv.arrivals("/hook")
	ids := map[string]int{}
	for _, a := range got {
		if a.verified != nil {
			t.Fatalf("a send does not verify: %v", a.verified)
		}
		ids[a.header.Get("webhook-id")]++
		if sent := decodeEvent(t, a.body); sent.Data.Delivery.Name != d.GetName() || sent.Type != "delivery.succeeded" {
			t.Fatalf("sent %s", a.body)
		}
	}
	if len(got) != 2 || len(ids) != 1 || ids[ev.GetId()] != 2 {
		t.Fatalf("the receiver got %d messages with ids %v; the event is %s", len(got), ids, ev.GetId())
	}
}

// Events reach Amazon SNS, SQS and EventBridge through a customer's role,
// on moto: each target's message carries the event, read back from SQS
// queues (SNS and an EventBridge rule deliver into queues there too).
func TestEventsReachSNSSQSAndEventBridgeOnMoto(t *testing.T) {
	m := testenv.SharedMoto(t)
	r := startServeWith(t, func(c *serveConfig) {
		c.Credential.AWS = awsclient.Endpoints{Region: m.Region, STSURL: m.Endpoint, S3URL: m.Endpoint, S3PathStyle: true,
			SNSURL: m.Endpoint, SQSURL: m.Endpoint, EventBridgeURL: m.Endpoint,
			PlatformCredentials: credentials.NewStaticCredentialsProvider(m.Platform.AccessKeyID, m.Platform.SecretAccessKey, "")}
		c.Credential.PlatformRoleARN = m.PlatformARN
		c.Credential.AccessCacheTTL = 200 * time.Millisecond
		c.Delivery.Health.Interval = 300 * time.Millisecond
		fastEvents(c)
	})
	ctx := context.Background()
	admin := r.token("acme", auth.PolicyAdministrator)
	suffix := strings.ToLower(rand.Text()[:8])
	role := testenv.NewCustomerRole(t, m, "acme-events-"+suffix, "placeholder", `{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":["s3:*","sns:Publish","sqs:SendMessage","events:PutEvents"],"Resource":"*"}]}`)
	cred, err := credentialv1.NewCredentialServiceClient(r.conns["credential"]).CreateCredential(ctx, &credentialv1.CreateCredentialRequest{Parent: production, CredentialId: "role",
		Credential: &credentialv1.Credential{Bucket: role.Bucket, Region: m.Region,
			Type: &credentialv1.Credential_RoleToRole{RoleToRole: &credentialv1.RoleToRole{TargetRoleArn: role.ARN}}}}, admin)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := m.IAM(m.Admin).UpdateAssumeRolePolicy(ctx, &iam.UpdateAssumeRolePolicyInput{RoleName: aws.String("acme-events-" + suffix),
		PolicyDocument: aws.String(cred.GetRoleToRole().GetTrustPolicyJson())}); err != nil {
		t.Fatal(err)
	}
	// The customer's side: a queue, a topic feeding a queue, a bus whose
	// rule feeds a queue.
	endpoints := awsclient.Endpoints{Region: m.Region, SNSURL: m.Endpoint, SQSURL: m.Endpoint, EventBridgeURL: m.Endpoint}
	adminCfg := endpoints.Static(m.Admin)
	sqsc, snsc, ebc := endpoints.SQS(adminCfg, m.Region), endpoints.SNS(adminCfg, m.Region), endpoints.EventBridge(adminCfg, m.Region)
	queue := func(name string) (url, arn string) {
		q, err := sqsc.CreateQueue(ctx, &sqs.CreateQueueInput{QueueName: aws.String(name + "-" + suffix)})
		if err != nil {
			t.Fatal(err)
		}
		attrs, err := sqsc.GetQueueAttributes(ctx, &sqs.GetQueueAttributesInput{QueueUrl: q.QueueUrl, AttributeNames: []sqstypes.QueueAttributeName{sqstypes.QueueAttributeNameQueueArn}})
		if err != nil {
			t.Fatal(err)
		}
		return aws.ToString(q.QueueUrl), attrs.Attributes[string(sqstypes.QueueAttributeNameQueueArn)]
	}
	direct, _ := queue("direct")
	viaSNS, viaSNSArn := queue("via-sns")
	viaBus, viaBusArn := queue("via-bus")
	topic, err := snsc.CreateTopic(ctx, &sns.CreateTopicInput{Name: aws.String("sluice-" + suffix)})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := snsc.Subscribe(ctx, &sns.SubscribeInput{TopicArn: topic.TopicArn, Protocol: aws.String("sqs"), Endpoint: aws.String(viaSNSArn)}); err != nil {
		t.Fatal(err)
	}
	bus := "sluice-" + suffix
	if _, err := ebc.CreateEventBus(ctx, &eventbridge.CreateEventBusInput{Name: aws.String(bus)}); err != nil {
		t.Fatal(err)
	}
	if _, err := ebc.PutRule(ctx, &eventbridge.PutRuleInput{Name: aws.String("to-queue"), EventBusName: aws.String(bus),
		EventPattern: aws.String(`{"source":["sluice"]}`)}); err != nil {
		t.Fatal(err)
	}
	if _, err := ebc.PutTargets(ctx, &eventbridge.PutTargetsInput{Rule: aws.String("to-queue"), EventBusName: aws.String(bus),
		Targets: []ebtypes.Target{{Id: aws.String("queue"), Arn: aws.String(viaBusArn)}}}); err != nil {
		t.Fatal(err)
	}
	evs := deliveryv1.NewEventServiceClient(r.conns["delivery"])
	for id, target := range map[string]*deliveryv1.Subscription{
		"sqs":    {Target: &deliveryv1.Subscription_Sqs{Sqs: &deliveryv1.SqsQueue{QueueUrl: direct, Credential: cred.GetName()}}},
		"sns":    {Target: &deliveryv1.Subscription_Sns{Sns: &deliveryv1.SnsTopic{TopicArn: aws.ToString(topic.TopicArn), Credential: cred.GetName()}}},
		"bridge": {Target: &deliveryv1.Subscription_Eventbridge{Eventbridge: &deliveryv1.EventBridgeBus{EventBus: bus, Credential: cred.GetName()}}},
	} {
		target.EventTypes = []deliveryv1.EventType{succeeded}
		if _, err := evs.CreateSubscription(ctx, &deliveryv1.CreateSubscriptionRequest{Parent: production, SubscriptionId: id, Subscription: target}, admin); err != nil {
			t.Fatalf("subscription %s: %v", id, err)
		}
	}
	dest, err := destinationv1.NewDestinationServiceClient(r.conns["destination"]).CreateDestination(ctx, &destinationv1.CreateDestinationRequest{Parent: production, DestinationId: "role",
		Destination: &destinationv1.Destination{Credential: cred.GetName(), Prefix: "exports-", Format: csvFormat()}}, admin)
	if err != nil {
		t.Fatal(err)
	}
	recs := customerBatches(t, 100, 100)
	d, err := deliverclient.DeliverStream(ctx, deliveryv1.NewDeliveryServiceClient(r.conns["delivery"]), &deliveryv1.DeliveryStart{Destination: dest.GetName(), OutputName: "out"},
		bytes.NewReader(ipcBytes(t, recs[0].Schema(), recs...)), deliverclient.Options{CallOptions: []grpc.CallOption{admin}})
	if err != nil {
		t.Fatal(err)
	}
	receive := func(url string) string {
		for range 40 {
			out, err := sqsc.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{QueueUrl: aws.String(url), WaitTimeSeconds: 1, MaxNumberOfMessages: 10})
			if err != nil {
				t.Fatal(err)
			}
			if len(out.Messages) > 1 {
				t.Fatalf("%s holds %d messages for one event", url, len(out.Messages))
			}
			if len(out.Messages) == 1 {
				return aws.ToString(out.Messages[0].Body)
			}
		}
		events, _ := evs.ListEvents(ctx, &deliveryv1.ListEventsRequest{Parent: production}, admin)
		t.Fatalf("nothing arrived in %s; events: %v", url, events)
		return ""
	}
	listed, err := evs.ListEvents(ctx, &deliveryv1.ListEventsRequest{Parent: production}, admin)
	if err != nil || len(listed.GetEvents()) != 1 {
		t.Fatalf("events: %v %v", listed, err)
	}
	want := listed.GetEvents()[0]
	check := func(target string, body []byte) {
		t.Helper()
		ev := decodeEvent(t, body)
		if ev.ID != want.GetId() || ev.Type != "delivery.succeeded" || ev.Data.Delivery.Name != d.GetName() || len(ev.Data.Delivery.Objects) != 1 {
			t.Fatalf("%s received %s", target, body)
		}
	}
	check("sqs", []byte(receive(direct)))
	var envelope struct{ Message string }
	if err := json.Unmarshal([]byte(receive(viaSNS)), &envelope); err != nil {
		t.Fatal(err)
	}
	check("sns", []byte(envelope.Message))
	var bridged struct {
		Source     string          `json:"source"`
		DetailType string          `json:"detail-type"`
		Detail     json.RawMessage `json:"detail"`
	}
	if err := json.Unmarshal([]byte(receive(viaBus)), &bridged); err != nil {
		t.Fatal(err)
	}
	if bridged.Source != "sluice" || bridged.DetailType != "delivery.succeeded" {
		t.Fatalf("EventBridge delivered %+v", bridged)
	}
	check("eventbridge", bridged.Detail)

	// The customer's trust policy changes to another External ID: the
	// health watcher warns before the next delivery fails, with the trust
	// policy to paste back.
	if _, err := m.IAM(m.Admin).UpdateAssumeRolePolicy(ctx, &iam.UpdateAssumeRolePolicyInput{RoleName: aws.String("acme-events-" + suffix),
		PolicyDocument: aws.String(strings.ReplaceAll(cred.GetRoleToRole().GetTrustPolicyJson(), cred.GetRoleToRole().GetExternalId(), "someone-elses"))}); err != nil {
		t.Fatal(err)
	}
	flows := deliveryv1.NewWorkflowServiceClient(r.conns["delivery"])
	for k := range 151 {
		if k == 150 {
			t.Fatal("no warning after the trust policy changed")
		}
		list, err := flows.ListNotifications(ctx, &deliveryv1.ListNotificationsRequest{Parent: production, Filter: "acknowledged = false"}, admin)
		if err != nil {
			t.Fatal(err)
		}
		if n := list.GetNotifications(); len(n) == 1 {
			if n[0].GetReason() != "ROLE_NOT_ASSUMABLE" || len(n[0].GetActions()) != 1 || n[0].GetActions()[0].GetId() != "fix-trust-policy" ||
				!strings.Contains(n[0].GetActions()[0].GetPolicyJson(), cred.GetRoleToRole().GetExternalId()) {
				t.Fatalf("the warning: %v", n[0])
			}
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// Two delivery replicas on one PostgreSQL: whichever replica ends a
// delivery, its event is sent once, by the replica holding the sender's
// lease; when a replica dies, the other sends what comes next.
func TestEventsFromTwoReplicasAreSentOnce(t *testing.T) {
	m := testenv.SharedMinIO(t)
	key := filepath.Join(t.TempDir(), "events.key")
	p := startProcesses(t, m, testenv.NewBucket(t, m), localserver.SluiceOptions{DeliveryReplicas: 2,
		Delivery: []string{"--database", testenv.NewDatabase(t), "--lease-ttl", "2s", "--recover-interval", "250ms", "--staging=false",
			"--master-key-file", key, "--webhook-allow-private", "--webhook-allow-http", "--event-poll", "200ms", "--health-interval", "300ms"}})
	ctx := context.Background()
	rcv := startReceiver(t)
	var delivs []deliveryv1.DeliveryServiceClient
	var evs deliveryv1.EventServiceClient
	for _, name := range []string{"delivery", "delivery-2"} {
		cc, err := grpc.NewClient(p.sl.Addrs[name], grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cc.Close() })
		delivs = append(delivs, deliveryv1.NewDeliveryServiceClient(cc))
		evs = deliveryv1.NewEventServiceClient(cc)
	}
	if _, err := evs.CreateSubscription(ctx, &deliveryv1.CreateSubscriptionRequest{Parent: production, SubscriptionId: "hook",
		Subscription: webhookSubscription(rcv.srv.URL+"/hook", rcv.secret, "", succeeded)}, p.as); err != nil {
		t.Fatal(err)
	}
	dest := p.destination(t, "replicas", nil)
	recs := customerBatches(t, 200, 200)
	stream := ipcBytes(t, recs[0].Schema(), recs...)
	deliver := func(via deliveryv1.DeliveryServiceClient, to string) string {
		d, err := deliverclient.DeliverStream(ctx, via, &deliveryv1.DeliveryStart{Destination: to}, bytes.NewReader(stream),
			deliverclient.Options{CallOptions: []grpc.CallOption{p.as}})
		if err != nil {
			t.Fatal(err)
		}
		return d.GetName()
	}
	var names []string
	for i := range 6 {
		names = append(names, deliver(delivs[i%2], dest.GetName()))
	}
	rcv.waitArrivals(t, "/hook", 6)

	// The health watcher runs on one replica at a time: a destination
	// whose bucket is deleted after a delivery raises one warning and one
	// event, however many passes and replicas there are.
	if _, err := evs.CreateSubscription(ctx, &deliveryv1.CreateSubscriptionRequest{Parent: production, SubscriptionId: "health",
		Subscription: webhookSubscription(rcv.srv.URL+"/health", rcv.secret, "", deliveryv1.EventType_EVENT_TYPE_DESTINATION_UNHEALTHY)}, p.as); err != nil {
		t.Fatal(err)
	}
	doomedBucket := testenv.NewBucket(t, m)
	doomed, err := p.dests.CreateDestination(ctx, &destinationv1.CreateDestinationRequest{Parent: production, DestinationId: "doomed",
		Destination: &destinationv1.Destination{Credential: p.cred, Prefix: "doomed/", Format: csvFormat(), BucketOverride: doomedBucket}}, p.as)
	if err != nil {
		t.Fatal(err)
	}
	names = append(names, deliver(delivs[0], doomed.GetName()))
	s3c := m.S3("", "")
	objs, err := s3c.ListObjectsV2(ctx, &s3.ListObjectsV2Input{Bucket: aws.String(doomedBucket)})
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range objs.Contents {
		if _, err := s3c.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: aws.String(doomedBucket), Key: o.Key}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s3c.DeleteBucket(ctx, &s3.DeleteBucketInput{Bucket: aws.String(doomedBucket)}); err != nil {
		t.Fatal(err)
	}
	rcv.waitArrivals(t, "/health", 1)
	time.Sleep(2 * time.Second) // several passes more
	if got := rcv.arrivals("/health"); len(got) != 1 || !strings.Contains(string(got[0].body), `"reason":"BUCKET_NOT_FOUND"`) {
		t.Fatalf("destination.unhealthy events: %d, the first %s", len(got), got[0].body)
	}
	flows := deliveryv1.NewWorkflowServiceClient(cc0(t, p))
	notes, err := flows.ListNotifications(ctx, &deliveryv1.ListNotificationsRequest{Parent: production, Filter: `destination = "` + doomed.GetName() + `"`}, p.as)
	if err != nil || len(notes.GetNotifications()) != 1 || notes.GetNotifications()[0].GetSeverity() != deliveryv1.Severity_SEVERITY_WARNING {
		t.Fatalf("warnings of the destination whose bucket went: %v %v", notes, err)
	}
	p.sl.Kill("delivery")
	for range 3 {
		names = append(names, deliver(delivs[1], dest.GetName()))
	}
	got := rcv.waitArrivals(t, "/hook", len(names))
	time.Sleep(time.Second) // a duplicate would come within a poll or two
	got = rcv.arrivals("/hook")
	seen := map[string]bool{}
	for _, a := range got {
		if a.verified != nil {
			t.Fatalf("signed with a key the receiver does not hold: %v", a.verified)
		}
		seen[decodeEvent(t, a.body).Data.Delivery.Name] = true
	}
	for _, n := range names {
		if !seen[n] {
			t.Errorf("no event for %s", n)
		}
	}
	if len(got) != len(names) {
		t.Fatalf("%d events arrived for %d deliveries", len(got), len(names))
	}
}

// The CLI as an operator uses it: a webhook subscription whose secret the
// CLI makes and prints once, the events listed with their attempts, and a
// paused subscription.
func TestCLISubscriptionsAndEvents(t *testing.T) {
	e := startDelivering(t, fastEvents)
	rcv := startReceiver(t)
	token, err := e.r.users.Mint("cli@acme.test", "acme", []string{auth.PolicyAdministrator}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	c := &cli{t: t, bin: buildSluice(t), env: append(os.Environ(), "SLUICE_DELIVERY_ADDR="+e.r.addrs["delivery"], "SLUICE_DESTINATION_ADDR="+e.r.addrs["destination"],
		"SLUICE_TOKEN="+token, "SLUICE_CONFIG="+filepath.Join(t.TempDir(), "none.yaml"))}
	dest := e.destination(t, "cli-events", &destinationv1.Destination{Format: csvFormat()})
	out := c.must(0, "subscription", "create", "hook", "--webhook", rcv.srv.URL+"/cli", "--events", "delivery.succeeded", "--destination", "cli-events")
	secret := regexp.MustCompile(`whsec_[A-Za-z0-9+/=]+`).FindString(out.stderr)
	if secret == "" || strings.Contains(out.stdout, secret) || !regexp.MustCompile(`secret set\s+true`).MatchString(out.stdout) {
		t.Fatalf("subscription create:\nstdout:\n%s\nstderr:\n%s", out.stdout, out.stderr)
	}
	rcv.useSecret(t, secret)
	if got := c.must(0, "subscription", "get", "hook", "-o", "json"); strings.Contains(got.stdout, secret) {
		t.Fatal("subscription get printed the secret")
	}
	c.must(2, "subscription", "create", "bad", "--events", "delivery.sent", "--webhook", rcv.srv.URL)
	d, err := e.deliver(context.Background(), dest.GetName(), reader(t, customerBatches(t, 100, 100)), e.admin, nil)
	if err != nil {
		t.Fatal(err)
	}
	a := rcv.waitArrivals(t, "/cli", 1)[0]
	if a.verified != nil {
		t.Fatalf("the CLI's secret does not verify the webhook: %v", a.verified)
	}
	var listed []struct {
		ID    string `json:"id"`
		Sends []struct {
			State string `json:"state"`
		} `json:"sends"`
	}
	for range 100 {
		c.json(c.must(0, "event", "list", "--delivery", last(d.GetName()), "-o", "json"), &listed)
		if len(listed) == 1 && listed[0].Sends[0].State == "EVENT_SEND_STATE_SENT" {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if len(listed) != 1 || listed[0].ID != a.header.Get("webhook-id") || listed[0].Sends[0].State != "EVENT_SEND_STATE_SENT" {
		t.Fatalf("event list: %+v", listed)
	}
	if got := c.must(0, "event", "get", listed[0].ID); !strings.Contains(got.stdout, "SENT, 1 attempt(s)") || !strings.Contains(got.stdout, d.GetName()) {
		t.Fatalf("event get:\n%s", got.stdout)
	}
	c.must(0, "subscription", "pause", "hook")
	if got := c.must(0, "subscription", "list"); !strings.Contains(got.stdout, "PAUSED") {
		t.Fatalf("subscription list after pause:\n%s", got.stdout)
	}
	if _, err := e.deliver(context.Background(), dest.GetName(), reader(t, customerBatches(t, 100, 100)), e.admin, nil); err != nil {
		t.Fatal(err)
	}
	time.Sleep(500 * time.Millisecond) // an event would go out within a poll
	if n := len(rcv.arrivals("/cli")); n != 1 {
		t.Fatalf("a paused subscription received %d events", n)
	}
}

// The health watcher on MinIO: a permission taken from the credential's
// user raises a WARNING naming it, with the action a failed delivery would
// offer, and a destination.unhealthy event, before any delivery fails; it
// clears itself once the permission is back. A key whose secret was set 80
// days ago (the clock moved on) warns that it is due for rotation.
func TestHealthWatcherWarnsBeforeADeliveryFails(t *testing.T) {
	var ahead atomic.Int64 // how far the watcher's clock is moved on
	e := startDelivering(t, func(c *serveConfig) {
		fastEvents(c)
		c.Delivery.Health.Interval = 300 * time.Millisecond
		c.Delivery.Clock = func() time.Time { return time.Now().Add(time.Duration(ahead.Load())) }
	})
	ctx := context.Background()
	evs := deliveryv1.NewEventServiceClient(e.r.conns["delivery"])
	flows := deliveryv1.NewWorkflowServiceClient(e.r.conns["delivery"])
	rcv := startReceiver(t)
	for id, types := range map[string][]deliveryv1.EventType{
		"health": {deliveryv1.EventType_EVENT_TYPE_DESTINATION_UNHEALTHY, deliveryv1.EventType_EVENT_TYPE_CREDENTIAL_EXPIRING}} {
		if _, err := evs.CreateSubscription(ctx, &deliveryv1.CreateSubscriptionRequest{Parent: production, SubscriptionId: id,
			Subscription: webhookSubscription(rcv.srv.URL+"/"+id, rcv.secret, "", types...)}, e.admin); err != nil {
			t.Fatal(err)
		}
	}
	dest := e.destination(t, "watched", &destinationv1.Destination{Format: csvFormat()})
	if _, err := e.deliver(ctx, dest.GetName(), reader(t, customerBatches(t, 100, 100)), e.admin, nil); err != nil {
		t.Fatal(err)
	}
	warnings := func() []*deliveryv1.Notification {
		list, err := flows.ListNotifications(ctx, &deliveryv1.ListNotificationsRequest{Parent: production}, e.admin)
		if err != nil {
			t.Fatal(err)
		}
		var out []*deliveryv1.Notification
		for _, n := range list.GetNotifications() {
			if n.GetSeverity() == deliveryv1.Severity_SEVERITY_WARNING {
				out = append(out, n)
			}
		}
		return out
	}
	waitFor := func(what string, ok func([]*deliveryv1.Notification) bool) []*deliveryv1.Notification {
		t.Helper()
		for range 150 {
			if w := warnings(); ok(w) {
				return w
			}
			time.Sleep(100 * time.Millisecond)
		}
		t.Fatalf("%s: warnings are %v", what, warnings())
		return nil
	}
	time.Sleep(time.Second) // a pass or more, with the destination healthy
	if w := warnings(); len(w) != 0 {
		t.Fatalf("warnings while everything works: %v", w)
	}
	readOnly := fmt.Sprintf(`{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":["s3:GetObject","s3:ListBucket","s3:GetBucketLocation","s3:DeleteObject","s3:AbortMultipartUpload","s3:ListMultipartUploadParts","s3:ListBucketMultipartUploads"],"Resource":["arn:aws:s3:::%s","arn:aws:s3:::%s/*"]}]}`, e.bucket, e.bucket)
	if err := testenv.SetMinIOUser(ctx, e.m, e.key, e.secret, readOnly); err != nil {
		t.Fatal(err)
	}
	w := waitFor("a permission taken away", func(w []*deliveryv1.Notification) bool { return len(w) == 1 })[0]
	if w.GetDestination() != dest.GetName() || w.GetReason() != "ACCESS_DENIED" || w.GetAcknowledged() || len(w.GetActions()) != 1 ||
		w.GetActions()[0].GetId() != "grant-permission" || w.GetActions()[0].GetMissingPermission() != "s3:PutObject" ||
		!strings.Contains(w.GetActions()[0].GetPolicyJson(), "s3:PutObject") {
		t.Fatalf("the warning: %v", w)
	}
	a := rcv.waitArrivals(t, "/health", 1)[0]
	if ev := string(a.body); !strings.Contains(ev, `"type":"destination.unhealthy"`) || !strings.Contains(ev, `"missing_permission":"s3:PutObject"`) || a.verified != nil {
		t.Fatalf("the destination.unhealthy event: %s (%v)", ev, a.verified)
	}
	time.Sleep(time.Second) // more passes: still one warning
	if got := warnings(); len(got) != 1 {
		t.Fatalf("%d warnings for one failing check", len(got))
	}
	policy := fmt.Sprintf(`{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":["s3:*"],"Resource":["arn:aws:s3:::%s","arn:aws:s3:::%s/*"]}]}`, e.bucket, e.bucket)
	if err := testenv.SetMinIOUser(ctx, e.m, e.key, e.secret, policy); err != nil {
		t.Fatal(err)
	}
	cleared := waitFor("the permission granted back", func(w []*deliveryv1.Notification) bool { return len(w) == 1 && w[0].GetAcknowledged() })[0]
	if !strings.Contains(cleared.GetMessage(), "Cleared") {
		t.Fatalf("the cleared warning: %v", cleared)
	}
	// 80 days on, the access key is due for rotation within 14 days.
	ahead.Store(int64(80 * 24 * time.Hour))
	keyWarning := waitFor("a key 80 days old", func(w []*deliveryv1.Notification) bool {
		return slices.ContainsFunc(w, func(n *deliveryv1.Notification) bool { return n.GetCredential() == e.cred })
	})
	i := slices.IndexFunc(keyWarning, func(n *deliveryv1.Notification) bool { return n.GetCredential() == e.cred })
	if n := keyWarning[i]; !strings.Contains(n.GetMessage(), "80 days ago") || !strings.Contains(n.GetMessage(), "sluice credential rotate") {
		t.Fatalf("the key's warning: %v", n)
	}
	got := rcv.waitArrivals(t, "/health", 2)
	if ev := string(got[1].body); !strings.Contains(ev, `"type":"credential.expiring"`) || !strings.Contains(ev, e.key) {
		t.Fatalf("the credential.expiring event: %s", ev)
	}
	// A user without a policy does not see the credential's warning.
	list, err := flows.ListNotifications(ctx, &deliveryv1.ListNotificationsRequest{Parent: production}, e.r.token("acme"))
	if err != nil {
		t.Fatal(err)
	}
	if slices.ContainsFunc(list.GetNotifications(), func(n *deliveryv1.Notification) bool { return n.GetCredential() != "" }) {
		t.Fatal("a user without a policy sees a credential's warning")
	}
}

// cc0 dials the first delivery replica of p.
func cc0(t *testing.T, p *processes) *grpc.ClientConn {
	t.Helper()
	cc, err := grpc.NewClient(p.sl.Addrs["delivery"], grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	return cc
}

// An access key's age comes from IAM where its user may ask
// (iam:ListAccessKeys, on moto), and from when its secret was set where
// not.
func TestAccessKeyCreateTimeFromIAMOnMoto(t *testing.T) {
	m := testenv.SharedMoto(t)
	r := startServeWith(t, func(c *serveConfig) {
		c.Credential.AWS = awsclient.Endpoints{Region: m.Region, STSURL: m.Endpoint, S3URL: m.Endpoint, S3PathStyle: true, IAMURL: m.Endpoint,
			PlatformCredentials: credentials.NewStaticCredentialsProvider(m.Platform.AccessKeyID, m.Platform.SecretAccessKey, "")}
	})
	ctx := context.Background()
	admin := r.token("acme", auth.PolicyAdministrator)
	creds := credentialv1.NewCredentialServiceClient(r.conns["credential"])
	suffix := strings.ToLower(rand.Text()[:8])
	for _, tc := range []struct {
		id, policy string
		known      bool
	}{
		{"may-ask", `{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":["s3:*","iam:ListAccessKeys"],"Resource":"*"}]}`, true},
		{"may-not", `{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":["s3:*"],"Resource":"*"}]}`, false},
	} {
		user, err := m.CreateUser(ctx, tc.id+"-"+suffix, tc.policy)
		if err != nil {
			t.Fatal(err)
		}
		before := time.Now().Add(-time.Minute)
		c, err := creds.CreateCredential(ctx, &credentialv1.CreateCredentialRequest{Parent: production, CredentialId: tc.id, Credential: &credentialv1.Credential{
			Bucket: "customer-bucket", Region: m.Region,
			Type: &credentialv1.Credential_AccessKey{AccessKey: &credentialv1.AccessKey{AccessKeyId: user.AccessKeyID, SecretAccessKey: user.SecretAccessKey}}}}, admin)
		if err != nil {
			t.Fatal(err)
		}
		created := c.GetAccessKey().GetKeyCreateTime()
		if known := created != nil; known != tc.known || (known && (created.AsTime().Before(before) || created.AsTime().After(time.Now().Add(time.Minute)))) {
			t.Fatalf("%s: key_create_time %v", tc.id, created)
		}
	}
}
