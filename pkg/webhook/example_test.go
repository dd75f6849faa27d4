package webhook_test

import (
	"fmt"
	"net/http"
	"time"

	"github.com/sluicehq/sluice/pkg/webhook"
)

// A receiver checks a message as README.md shows it: the headers, the raw
// body and the secret it was given.
func ExampleVerify() {
	key, _ := webhook.ParseSecret("whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD")
	body := []byte(`{"id":"e20261204-101502-118-k2mqzs","type":"delivery.succeeded","timestamp":"2026-12-04T10:15:02.118Z","data":{"delivery":{"name":"tenants/acme/environments/production/deliveries/d20261204-101500-902-x7rq4a"}}}`)
	h := http.Header{}
	h.Set("webhook-id", "e20261204-101502-118-k2mqzs")
	h.Set("webhook-timestamp", "1796379302")
	h.Set("webhook-signature", "v1,IMv0SbaxC7XwbqoOBOXo8J5FM/BLG7FPcYJjqFX4cWA=")
	fmt.Println(webhook.Verify(key, h, body, time.Unix(1796379302, 0).Add(time.Minute)))
	fmt.Println(webhook.Verify(key, h, body, time.Unix(1796379302, 0).Add(time.Hour)))
	// Output:
	// <nil>
	// webhook-timestamp is too far from now
}
