// Package webhook signs and sends events as the Standard Webhooks
// specification (standardwebhooks.com) says, and verifies them for
// receivers: each POST carries `webhook-id`, `webhook-timestamp` and
// `webhook-signature`, an HMAC-SHA256 of `{id}.{timestamp}.{body}` keyed by
// the subscription's secret.
//
// Its Client is made for URLs a customer typed: it refuses private,
// loopback and link-local addresses (checked on the address it connects to,
// after DNS, so a name that resolves to one is refused too) unless the
// operator allows them, follows no redirects, and bounds the time of a
// request and the bytes of an answer it reads.
package webhook

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// SecretPrefix starts every secret, as Standard Webhooks' libraries expect.
const SecretPrefix = "whsec_"

// ParseSecret answers the key of a secret: `whsec_` and the base64 of 24 to
// 64 bytes.
func ParseSecret(secret string) ([]byte, error) {
	b64, ok := strings.CutPrefix(secret, SecretPrefix)
	if !ok {
		return nil, errors.New("must start with " + SecretPrefix)
	}
	key, err := base64.StdEncoding.DecodeString(b64)
	if err != nil {
		return nil, errors.New("must be " + SecretPrefix + " and standard base64")
	}
	if len(key) < 24 || len(key) > 64 {
		return nil, fmt.Errorf("must hold 24 to 64 bytes after %s, not %d", SecretPrefix, len(key))
	}
	return key, nil
}

// Sign answers the `webhook-signature` header of body sent with id at ts.
func Sign(key []byte, id string, ts time.Time, body []byte) string {
	return "v1," + base64.StdEncoding.EncodeToString(mac(key, id, strconv.FormatInt(ts.Unix(), 10), body))
}

func mac(key []byte, id, ts string, body []byte) []byte {
	h := hmac.New(sha256.New, key)
	h.Write([]byte(id))
	h.Write([]byte{'.'})
	h.Write([]byte(ts))
	h.Write([]byte{'.'})
	h.Write(body)
	return h.Sum(nil)
}

// Tolerance is how far a message's timestamp may be from the receiver's
// clock, against replays.
const Tolerance = 5 * time.Minute

// Verify checks a received message as a receiver should: a signature among
// the space-separated ones of the header matches, and the timestamp is
// within Tolerance of now.
func Verify(key []byte, h http.Header, body []byte, now time.Time) error {
	id, ts, sigs := h.Get("webhook-id"), h.Get("webhook-timestamp"), h.Get("webhook-signature")
	if id == "" || ts == "" || sigs == "" {
		return errors.New("webhook-id, webhook-timestamp and webhook-signature are required")
	}
	sec, err := strconv.ParseInt(ts, 10, 64)
	if err != nil {
		return errors.New("webhook-timestamp is not Unix seconds")
	}
	if d := now.Sub(time.Unix(sec, 0)); d > Tolerance || d < -Tolerance {
		return errors.New("webhook-timestamp is too far from now")
	}
	want := mac(key, id, ts, body)
	for _, s := range strings.Fields(sigs) {
		v, sig, ok := strings.Cut(s, ",")
		if !ok || v != "v1" {
			continue
		}
		got, err := base64.StdEncoding.DecodeString(sig)
		if err == nil && subtle.ConstantTimeCompare(got, want) == 1 {
			return nil
		}
	}
	return errors.New("no signature matches")
}

// Options shape a Client.
type Options struct {
	// AllowPrivate lets requests go to private, loopback and link-local
	// addresses (an operator's own network, tests on 127.0.0.1).
	AllowPrivate bool
	// AllowHTTP lets URLs be plain http://; https:// otherwise.
	AllowHTTP bool
	// Timeout bounds one request, connecting and the answer included.
	Timeout time.Duration
	// Transport, when set, carries the requests (tests); the address check
	// is then the caller's.
	Transport http.RoundTripper
}

// MaxAnswerBytes is how much of an answer is read: enough for an error
// message, not enough to be a way to fill Sluice's memory.
const MaxAnswerBytes = 4 << 10

// Client sends signed webhooks.
type Client struct {
	opts Options
	http *http.Client
}

// NewClient answers a Client with opts.
func NewClient(opts Options) *Client {
	if opts.Timeout <= 0 {
		opts.Timeout = 10 * time.Second
	}
	rt := opts.Transport
	if rt == nil {
		d := &net.Dialer{Timeout: opts.Timeout, Control: dialControl(opts.AllowPrivate)}
		rt = &http.Transport{
			DialContext: d.DialContext, TLSHandshakeTimeout: opts.Timeout, ResponseHeaderTimeout: opts.Timeout,
			MaxIdleConnsPerHost: 4, IdleConnTimeout: time.Minute, ForceAttemptHTTP2: true,
			// No proxy from the environment: the address check must see the
			// address the request goes to.
			Proxy: nil,
		}
	}
	return &Client{opts: opts, http: &http.Client{
		Transport: rt, Timeout: opts.Timeout,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}}
}

// dialControl checks the address a connection is about to be made to,
// after DNS: a name that resolves to a refused address is refused too.
func dialControl(allowPrivate bool) func(_, address string, _ syscall.RawConn) error {
	return func(_, address string, _ syscall.RawConn) error {
		if allowPrivate {
			return nil
		}
		ap, err := netip.ParseAddrPort(address)
		if err != nil {
			return err
		}
		return checkAddr(ap.Addr())
	}
}

// ErrNotAllowed is a URL or address the client refuses to send to.
var ErrNotAllowed = errors.New("not allowed")

// checkAddr refuses what a customer's URL must not reach: Sluice's own
// host and network.
func checkAddr(a netip.Addr) error {
	a = a.Unmap()
	switch {
	case a.IsLoopback(), a.IsPrivate(), a.IsLinkLocalUnicast(), a.IsLinkLocalMulticast(), a.IsUnspecified(),
		a.IsMulticast(), a.IsInterfaceLocalMulticast():
		return fmt.Errorf("address %s is private, loopback or link-local: %w", a, ErrNotAllowed)
	}
	// Carrier-grade NAT (100.64.0.0/10) is private to the provider.
	if a.Is4() && netip.MustParsePrefix("100.64.0.0/10").Contains(a) {
		return fmt.Errorf("address %s is in shared address space: %w", a, ErrNotAllowed)
	}
	return nil
}

// CheckURL answers why the client would refuse raw, nil when it would try
// it: a scheme other than https (or http when allowed), credentials in the
// URL, a fragment, or a host that is a refused address. Names are checked
// again, on the address, when the request connects.
func (c *Client) CheckURL(raw string) error {
	u, err := url.Parse(raw)
	if err != nil {
		return errors.New("is not a URL")
	}
	switch {
	case u.Scheme == "https":
	case u.Scheme == "http" && c.opts.AllowHTTP:
	case u.Scheme == "http":
		return fmt.Errorf("must be https:// (the operator does not allow http://): %w", ErrNotAllowed)
	default:
		return errors.New("must be an https:// URL")
	}
	if u.Host == "" || u.Hostname() == "" {
		return errors.New("must have a host")
	}
	if u.User != nil {
		return errors.New("must not carry a user or password: the signature authenticates Sluice")
	}
	if u.Fragment != "" {
		return errors.New("must not have a #fragment")
	}
	if a, err := netip.ParseAddr(strings.Trim(u.Hostname(), "[]")); err == nil && !c.opts.AllowPrivate {
		if err := checkAddr(a); err != nil {
			return err
		}
	}
	if strings.EqualFold(u.Hostname(), "localhost") && !c.opts.AllowPrivate {
		return fmt.Errorf("localhost: %w", ErrNotAllowed)
	}
	return nil
}

// Answer is what a target said.
type Answer struct {
	// Status is the HTTP status; 0 when none came.
	Status int
	// Body is the start of the answer's body.
	Body string
}

// Send posts body, signed with key as id at ts, to rawURL, and answers
// nil only for a 2xx answer.
func (c *Client) Send(ctx context.Context, rawURL string, key []byte, id string, ts time.Time, body []byte) (Answer, error) {
	if err := c.CheckURL(rawURL); err != nil {
		return Answer{}, fmt.Errorf("webhook URL %w", err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, rawURL, bytes.NewReader(body))
	if err != nil {
		return Answer{}, err
	}
	req.Header.Set("content-type", "application/json")
	req.Header.Set("user-agent", "Sluice-Webhooks/1")
	req.Header.Set("webhook-id", id)
	req.Header.Set("webhook-timestamp", strconv.FormatInt(ts.Unix(), 10))
	req.Header.Set("webhook-signature", Sign(key, id, ts, body))
	resp, err := c.http.Do(req)
	if err != nil {
		return Answer{}, fmt.Errorf("send webhook: %w", redact(err))
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, MaxAnswerBytes))
	// Drain a little more so the connection can be reused, never all.
	_, _ = io.CopyN(io.Discard, resp.Body, 64<<10)
	a := Answer{Status: resp.StatusCode, Body: strings.ToValidUTF8(string(b), "?")}
	switch {
	case resp.StatusCode >= 200 && resp.StatusCode < 300:
		return a, nil
	case resp.StatusCode >= 300 && resp.StatusCode < 400:
		return a, fmt.Errorf("the endpoint answered %d (redirects are not followed: use the final URL)", resp.StatusCode)
	default:
		return a, fmt.Errorf("the endpoint answered %d", resp.StatusCode)
	}
}

// redact drops the URL from a transport error: its query may carry a
// token the customer put there.
func redact(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}
