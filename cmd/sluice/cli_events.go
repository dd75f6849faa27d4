package main

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/spf13/cobra"
	"google.golang.org/protobuf/types/known/fieldmaskpb"

	deliveryv1 "github.com/sluicehq/sluice/gen/sluice/delivery/v1"
	"github.com/sluicehq/sluice/pkg/webhook"
)

// eventTypeFlag reads `delivery.succeeded,delivery.failed` (or the enum
// names) into event types.
func eventTypeFlag(s string) ([]deliveryv1.EventType, error) {
	var out []deliveryv1.EventType
	for _, f := range strings.Split(s, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		name := "EVENT_TYPE_" + strings.ToUpper(strings.ReplaceAll(f, ".", "_"))
		v, ok := deliveryv1.EventType_value[name]
		if !ok {
			v, ok = deliveryv1.EventType_value[f]
		}
		if !ok || v == 0 {
			return nil, usageError("--events: %q is not an event type; use delivery.succeeded, delivery.failed or delivery.resolved", f)
		}
		out = append(out, deliveryv1.EventType(v))
	}
	return out, nil
}

// eventTypeName answers `delivery.succeeded` for EVENT_TYPE_DELIVERY_SUCCEEDED.
func eventTypeName(t deliveryv1.EventType) string {
	return strings.ToLower(strings.Replace(enum(t, "EVENT_TYPE_"), "_", ".", 1))
}

func subscriptionTarget(x *deliveryv1.Subscription) string {
	switch t := x.GetTarget().(type) {
	case *deliveryv1.Subscription_Webhook:
		return "webhook " + t.Webhook.GetUrl()
	case *deliveryv1.Subscription_Sns:
		return "sns " + t.Sns.GetTopicArn()
	case *deliveryv1.Subscription_Sqs:
		return "sqs " + t.Sqs.GetQueueUrl()
	case *deliveryv1.Subscription_Eventbridge:
		return "eventbridge " + t.Eventbridge.GetEventBus()
	}
	return "-"
}

func subscriptionCommand() *cobra.Command {
	c := &clientConfig{}
	types := func(x *deliveryv1.Subscription) string {
		var names []string
		for _, t := range x.GetEventTypes() {
			names = append(names, eventTypeName(t))
		}
		return strings.Join(names, ",")
	}
	state := func(x *deliveryv1.Subscription) string {
		if x.GetPaused() {
			return "PAUSED"
		}
		return enum(x.GetState(), "SUBSCRIPTION_STATE_")
	}
	cols := []tableColumn[*deliveryv1.Subscription]{
		{"ID", func(x *deliveryv1.Subscription) string { return last(x.GetName()) }},
		{"EVENTS", types},
		{"DESTINATION", func(x *deliveryv1.Subscription) string {
			if x.GetDestination() == "" {
				return "(all)"
			}
			return last(x.GetDestination())
		}},
		{"TARGET", subscriptionTarget},
		{"STATE", state},
	}
	one := func(p printer, x *deliveryv1.Subscription) error {
		return printOne(p, x, func(w io.Writer) {
			fmt.Fprintf(w, "name\t%s\nevents\t%s\ntarget\t%s\nstate\t%s\n", x.GetName(), types(x), subscriptionTarget(x), state(x))
			if x.GetDestination() != "" {
				fmt.Fprintf(w, "destination\t%s\n", x.GetDestination())
			}
			if wh := x.GetWebhook(); wh != nil {
				fmt.Fprintf(w, "secret set\t%v (%s)\n", wh.GetSecretSet(), when(wh.GetSecretUpdateTime()))
			}
			if cred := targetCredentialOf(x); cred != "" {
				fmt.Fprintf(w, "credential\t%s\n", cred)
			}
			if x.GetConsecutiveFailures() > 0 {
				fmt.Fprintf(w, "failing since\t%s\nfailures in a row\t%d\nlast error\t%s\n", when(x.GetFailingSince()), x.GetConsecutiveFailures(), x.GetLastError())
			}
			fmt.Fprintf(w, "etag\t%s\nupdated\t%s\n", x.GetEtag(), when(x.GetUpdateTime()))
		})
	}
	var (
		hook, sqsURL, snsARN, bus, credential, destination, events, secretFromEnv string
	)
	create := &cobra.Command{
		Use:   "create ID --events delivery.succeeded[,...] (--webhook URL [--secret-from-env VAR] | --sqs URL | --sns ARN | --eventbridge BUS) [--credential C] [--destination D]",
		Short: "Send an environment's (or one destination's) events to a signed webhook, an SNS topic, an SQS queue or an EventBridge bus",
		Long: `Creates a subscription. A webhook is signed with a secret (whsec_...):
read from the variable --secret-from-env names, or made here and printed
once, since Sluice never shows it again. SNS, SQS and EventBridge are sent
through a credential's access (--credential).`,
		RunE: run(c, 1, func(cmd *cobra.Command, p printer, args []string) error {
			parent, err := c.parent()
			if err != nil {
				return err
			}
			sub := &deliveryv1.Subscription{}
			if sub.EventTypes, err = eventTypeFlag(events); err != nil {
				return err
			}
			if destination != "" {
				if sub.Destination, err = c.name("destinations", destination); err != nil {
					return err
				}
			}
			credName := ""
			if credential != "" {
				if credName, err = c.name("credentials", credential); err != nil {
					return err
				}
			}
			made := ""
			targets := 0
			for _, set := range []string{hook, sqsURL, snsARN, bus} {
				if set != "" {
					targets++
				}
			}
			if targets != 1 {
				return usageError("give one of --webhook, --sqs, --sns or --eventbridge")
			}
			switch {
			case hook != "":
				secret := ""
				if secretFromEnv != "" {
					if secret = os.Getenv(secretFromEnv); secret == "" {
						return usageError("the variable %s is empty", secretFromEnv)
					}
				} else {
					b := make([]byte, 32)
					_, _ = rand.Read(b)
					secret = webhook.SecretPrefix + base64.StdEncoding.EncodeToString(b)
					made = secret
				}
				sub.Target = &deliveryv1.Subscription_Webhook{Webhook: &deliveryv1.Webhook{Url: hook, Secret: secret}}
			case sqsURL != "":
				sub.Target = &deliveryv1.Subscription_Sqs{Sqs: &deliveryv1.SqsQueue{QueueUrl: sqsURL, Credential: credName}}
			case snsARN != "":
				sub.Target = &deliveryv1.Subscription_Sns{Sns: &deliveryv1.SnsTopic{TopicArn: snsARN, Credential: credName}}
			default:
				sub.Target = &deliveryv1.Subscription_Eventbridge{Eventbridge: &deliveryv1.EventBridgeBus{EventBus: bus, Credential: credName}}
			}
			return withService(c, cmd, "delivery", deliveryv1.NewEventServiceClient, func(ctx context.Context, cl deliveryv1.EventServiceClient) error {
				out, err := cl.CreateSubscription(ctx, &deliveryv1.CreateSubscriptionRequest{Parent: parent, SubscriptionId: args[0], Subscription: sub}, c.call()...)
				if err != nil {
					return err
				}
				if made != "" {
					fmt.Fprintf(cmd.ErrOrStderr(), "signing secret (shown once; give it to the receiver):\n%s\n", made)
				}
				return one(p, out)
			})
		}),
	}
	create.Flags().StringVar(&hook, "webhook", "", "an https:// endpoint that receives each event as a signed POST")
	create.Flags().StringVar(&secretFromEnv, "secret-from-env", "", "the environment variable holding the webhook's secret (whsec_...); made here when not given")
	create.Flags().StringVar(&sqsURL, "sqs", "", "an SQS queue URL")
	create.Flags().StringVar(&snsARN, "sns", "", "an SNS topic ARN")
	create.Flags().StringVar(&bus, "eventbridge", "", "an EventBridge event bus name or ARN")
	create.Flags().StringVar(&credential, "credential", "", "the credential whose access sends to SNS, SQS or EventBridge")
	create.Flags().StringVar(&destination, "destination", "", "only this destination's events (default: every destination of the environment)")
	create.Flags().StringVar(&events, "events", "delivery.succeeded,delivery.failed", "the event types to send")

	get := &cobra.Command{Use: "get ID|NAME", Short: "Show a subscription (its secret is never shown)", RunE: run(c, 1, func(cmd *cobra.Command, p printer, args []string) error {
		name, err := c.name("subscriptions", args[0])
		if err != nil {
			return err
		}
		return withService(c, cmd, "delivery", deliveryv1.NewEventServiceClient, func(ctx context.Context, cl deliveryv1.EventServiceClient) error {
			out, err := cl.GetSubscription(ctx, &deliveryv1.GetSubscriptionRequest{Name: name}, c.call()...)
			if err != nil {
				return err
			}
			return one(p, out)
		})
	})}
	list := &cobra.Command{Use: "list", Short: "List the environment's subscriptions", RunE: run(c, 0, func(cmd *cobra.Command, p printer, _ []string) error {
		parent, err := c.parent()
		if err != nil {
			return err
		}
		return withService(c, cmd, "delivery", deliveryv1.NewEventServiceClient, func(ctx context.Context, cl deliveryv1.EventServiceClient) error {
			var all []*deliveryv1.Subscription
			for token := ""; ; {
				page, err := cl.ListSubscriptions(ctx, &deliveryv1.ListSubscriptionsRequest{Parent: parent, PageToken: token}, c.call()...)
				if err != nil {
					return err
				}
				all = append(all, page.GetSubscriptions()...)
				if token = page.GetNextPageToken(); token == "" {
					break
				}
			}
			return printList(p, all, cols)
		})
	})}
	update := func(use, short string, sub func(args []string) (*deliveryv1.Subscription, []string, error)) *cobra.Command {
		return &cobra.Command{Use: use, Short: short, RunE: run(c, 1, func(cmd *cobra.Command, p printer, args []string) error {
			name, err := c.name("subscriptions", args[0])
			if err != nil {
				return err
			}
			in, paths, err := sub(args)
			if err != nil {
				return err
			}
			in.Name = name
			return withService(c, cmd, "delivery", deliveryv1.NewEventServiceClient, func(ctx context.Context, cl deliveryv1.EventServiceClient) error {
				out, err := cl.UpdateSubscription(ctx, &deliveryv1.UpdateSubscriptionRequest{Subscription: in, UpdateMask: &fieldmaskpb.FieldMask{Paths: paths}}, c.call()...)
				if err != nil {
					return err
				}
				return one(p, out)
			})
		})}
	}
	pause := update("pause ID|NAME", "Stop sending new events to a subscription", func([]string) (*deliveryv1.Subscription, []string, error) {
		return &deliveryv1.Subscription{Paused: true}, []string{"paused"}, nil
	})
	resume := update("resume ID|NAME", "Send new events to a paused subscription again", func([]string) (*deliveryv1.Subscription, []string, error) {
		return &deliveryv1.Subscription{}, []string{"paused"}, nil
	})
	var rotateFromEnv string
	rotate := update("rotate-secret ID|NAME --secret-from-env VAR", "Replace a webhook's signing secret", func([]string) (*deliveryv1.Subscription, []string, error) {
		secret := os.Getenv(rotateFromEnv)
		if rotateFromEnv == "" || secret == "" {
			return nil, nil, usageError("the new secret is read from the variable --secret-from-env names")
		}
		return &deliveryv1.Subscription{Target: &deliveryv1.Subscription_Webhook{Webhook: &deliveryv1.Webhook{Secret: secret}}}, []string{"webhook.secret"}, nil
	})
	rotate.Flags().StringVar(&rotateFromEnv, "secret-from-env", "", "the environment variable holding the new secret (whsec_...)")
	del := &cobra.Command{Use: "delete ID|NAME", Short: "Delete a subscription", RunE: run(c, 1, func(cmd *cobra.Command, p printer, args []string) error {
		name, err := c.name("subscriptions", args[0])
		if err != nil {
			return err
		}
		return withService(c, cmd, "delivery", deliveryv1.NewEventServiceClient, func(ctx context.Context, cl deliveryv1.EventServiceClient) error {
			if _, err := cl.DeleteSubscription(ctx, &deliveryv1.DeleteSubscriptionRequest{Name: name}, c.call()...); err != nil {
				return err
			}
			fmt.Fprintf(p.w, "deleted %s\n", name)
			return nil
		})
	})}
	return clientCommand("subscription", "Send events when deliveries end: signed webhooks, SNS, SQS, EventBridge", c, create, get, list, pause, resume, rotate, del)
}

func targetCredentialOf(x *deliveryv1.Subscription) string {
	switch t := x.GetTarget().(type) {
	case *deliveryv1.Subscription_Sns:
		return t.Sns.GetCredential()
	case *deliveryv1.Subscription_Sqs:
		return t.Sqs.GetCredential()
	case *deliveryv1.Subscription_Eventbridge:
		return t.Eventbridge.GetCredential()
	}
	return ""
}

func eventCommand() *cobra.Command {
	c := &clientConfig{}
	sendState := func(x *deliveryv1.Event) string {
		var parts []string
		for _, s := range x.GetSends() {
			parts = append(parts, fmt.Sprintf("%s %s (%d)", last(s.GetSubscription()), enum(s.GetState(), "EVENT_SEND_STATE_"), s.GetAttemptCount()))
		}
		return strings.Join(parts, ", ")
	}
	var delivery, typ string
	list := &cobra.Command{Use: "list [--delivery D] [--type delivery.failed]", Short: "List events, newest first, and how sending each went", RunE: run(c, 0, func(cmd *cobra.Command, p printer, _ []string) error {
		parent, err := c.parent()
		if err != nil {
			return err
		}
		var terms []string
		if delivery != "" {
			name, err := c.name("deliveries", delivery)
			if err != nil {
				return err
			}
			terms = append(terms, fmt.Sprintf("delivery = %q", name))
		}
		if typ != "" {
			terms = append(terms, fmt.Sprintf("type = %q", typ))
		}
		return withService(c, cmd, "delivery", deliveryv1.NewEventServiceClient, func(ctx context.Context, cl deliveryv1.EventServiceClient) error {
			page, err := cl.ListEvents(ctx, &deliveryv1.ListEventsRequest{Parent: parent, Filter: strings.Join(terms, " AND "), PageSize: 100}, c.call()...)
			if err != nil {
				return err
			}
			return printList(p, page.GetEvents(), []tableColumn[*deliveryv1.Event]{
				{"ID", (*deliveryv1.Event).GetId},
				{"TYPE", func(x *deliveryv1.Event) string { return eventTypeName(x.GetType()) }},
				{"DELIVERY", func(x *deliveryv1.Event) string { return last(x.GetDelivery()) }},
				{"SENDS", sendState},
				{"AT", func(x *deliveryv1.Event) string { return when(x.GetCreateTime()) }},
			})
		})
	})}
	list.Flags().StringVar(&delivery, "delivery", "", "only this delivery's events")
	list.Flags().StringVar(&typ, "type", "", "only events of this type (delivery.succeeded, delivery.failed, delivery.resolved)")
	get := &cobra.Command{Use: "get ID|NAME", Short: "Show an event, its body, and every attempt to send it", RunE: run(c, 1, func(cmd *cobra.Command, p printer, args []string) error {
		name, err := c.name("events", args[0])
		if err != nil {
			return err
		}
		return withService(c, cmd, "delivery", deliveryv1.NewEventServiceClient, func(ctx context.Context, cl deliveryv1.EventServiceClient) error {
			x, err := cl.GetEvent(ctx, &deliveryv1.GetEventRequest{Name: name}, c.call()...)
			if err != nil {
				return err
			}
			return printOne(p, x, func(w io.Writer) {
				fmt.Fprintf(w, "name\t%s\nid\t%s\ntype\t%s\ndelivery\t%s\nat\t%s\n", x.GetName(), x.GetId(), eventTypeName(x.GetType()), x.GetDelivery(), when(x.GetCreateTime()))
				for _, s := range x.GetSends() {
					fmt.Fprintf(w, "send to %s\t%s, %d attempt(s)", last(s.GetSubscription()), enum(s.GetState(), "EVENT_SEND_STATE_"), s.GetAttemptCount())
					if s.GetNextAttemptTime() != nil {
						fmt.Fprintf(w, ", next %s", when(s.GetNextAttemptTime()))
					}
					fmt.Fprintln(w)
					for _, a := range s.GetAttempts() {
						outcome := "ok"
						if !a.GetOk() {
							outcome = a.GetError()
						}
						fmt.Fprintf(w, "  %s\t%d ms, %s\n", when(a.GetTime()), a.GetDurationMs(), outcome)
					}
				}
				fmt.Fprintf(w, "body\t%s\n", x.GetPayload())
			})
		})
	})}
	return clientCommand("event", "List the events sent when deliveries end, and the attempts to send each", c, list, get)
}
