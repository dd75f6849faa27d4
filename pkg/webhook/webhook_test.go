package webhook

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// The example of the Standard Webhooks specification's reference
// libraries: another implementation's receiver accepts what Sign makes.
func TestSignMatchesTheSpecificationsExample(t *testing.T) {
	key, err := ParseSecret("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
	if err != nil {
		t.Fatal(err)
	}
	got := Sign(key, "msg_p5jXN8AQM9LWM0D4loKWxJek", time.Unix(1614265330, 0), []byte(`{"test": 2432232314}`))
	if want := "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="; got != want {
		t.Fatalf("signature %s, want %s", got, want)
	}
}

func TestVerify(t *testing.T) {
	key, _ := ParseSecret("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
	other, _ := ParseSecret("whsec_" + strings.Repeat("A", 32))
	now := time.Unix(1700000000, 0)
	body := []byte(`{"type":"delivery.succeeded"}`)
	header := func(k []byte, ts time.Time, b []byte) http.Header {
		h := http.Header{}
		h.Set("webhook-id", "e1")
		h.Set("webhook-timestamp", "1700000000")
		if !ts.Equal(now) {
			h.Set("webhook-timestamp", ts.Format("20060102"))
		}
		h.Set("webhook-signature", "v1,bm90IGl0 "+Sign(k, "e1", now, b))
		return h
	}
	if err := Verify(key, header(key, now, body), body, now); err != nil {
		t.Fatalf("a good message: %v", err)
	}
	for name, err := range map[string]error{
		"other key":     Verify(key, header(other, now, body), body, now),
		"changed body":  Verify(key, header(key, now, body), []byte(`{"type":"delivery.failed"}`), now),
		"replayed late": Verify(key, header(key, now, body), body, now.Add(Tolerance+time.Second)),
		"bad timestamp": Verify(key, header(key, now.Add(time.Hour), body), body, now),
		"no headers":    Verify(key, http.Header{}, body, now),
	} {
		if err == nil {
			t.Errorf("%s: verified", name)
		}
	}
}

func TestParseSecret(t *testing.T) {
	for _, bad := range []string{"", "secret", "whsec_", "whsec_!!!!", "whsec_" + strings.Repeat("A", 8), "whsec_" + strings.Repeat("A", 100)} {
		if _, err := ParseSecret(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

func TestClientRefusesPrivateAddressesUnlessAllowed(t *testing.T) {
	var got int
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { got++ }))
	defer srv.Close()
	key := make([]byte, 32)
	strict := NewClient(Options{AllowHTTP: true, Timeout: 5 * time.Second})
	for _, u := range []string{srv.URL, "http://localhost:1/x", "http://10.1.2.3/x", "http://169.254.169.254/latest/meta-data", "http://[::1]:1/x", "http://[fe80::1]/x"} {
		if err := strict.CheckURL(u); !errors.Is(err, ErrNotAllowed) {
			t.Errorf("CheckURL(%s) = %v, want not allowed", u, err)
		}
	}
	if _, err := strict.Send(context.Background(), srv.URL, key, "e1", time.Now(), []byte("{}")); !errors.Is(err, ErrNotAllowed) {
		t.Fatalf("send to %s: %v, want not allowed", srv.URL, err)
	}
	// A name that resolves to a refused address passes the URL check and
	// is refused at the address the dialer connects to.
	for addr, refused := range map[string]bool{"127.0.0.1:80": true, "[::ffff:10.0.0.1]:443": true, "192.168.1.1:443": true,
		"100.64.0.1:443": true, "[fd00::1]:443": true, "93.184.215.14:443": false, "[2606:4700::1111]:443": false} {
		err := dialControl(false)("tcp", addr, nil)
		if refused != errors.Is(err, ErrNotAllowed) {
			t.Errorf("dial %s: %v, refused want %v", addr, err, refused)
		}
		if err := dialControl(true)("tcp", addr, nil); err != nil {
			t.Errorf("dial %s allowed: %v", addr, err)
		}
	}
	if got != 0 {
		t.Fatalf("the refused requests reached the server %d times", got)
	}
	open := NewClient(Options{AllowHTTP: true, AllowPrivate: true, Timeout: 5 * time.Second})
	if _, err := open.Send(context.Background(), srv.URL, key, "e1", time.Now(), []byte("{}")); err != nil || got != 1 {
		t.Fatalf("allowed send: %v, %d requests", err, got)
	}
	if err := NewClient(Options{}).CheckURL("http://example.com/x"); !errors.Is(err, ErrNotAllowed) {
		t.Fatalf("http:// without AllowHTTP: %v", err)
	}
	for _, u := range []string{"ftp://example.com/", "https://user:pw@example.com/", "https:///x", "https://example.com/#f"} {
		if err := open.CheckURL(u); err == nil {
			t.Errorf("CheckURL(%s) accepted", u)
		}
	}
}

func TestClientFollowsNoRedirectAndReadsLittle(t *testing.T) {
	var hits []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits = append(hits, r.URL.Path)
		switch r.URL.Path {
		case "/redirect":
			http.Redirect(w, r, "/elsewhere", http.StatusTemporaryRedirect)
		case "/big":
			w.WriteHeader(http.StatusInternalServerError)
			_, _ = w.Write([]byte(strings.Repeat("x", 1<<20)))
		}
	}))
	defer srv.Close()
	c := NewClient(Options{AllowHTTP: true, AllowPrivate: true, Timeout: 5 * time.Second})
	a, err := c.Send(context.Background(), srv.URL+"/redirect", make([]byte, 32), "e1", time.Now(), []byte("{}"))
	if err == nil || a.Status != http.StatusTemporaryRedirect || len(hits) != 1 {
		t.Fatalf("redirect: %v, status %d, hits %v", err, a.Status, hits)
	}
	a, err = c.Send(context.Background(), srv.URL+"/big", make([]byte, 32), "e1", time.Now(), []byte("{}"))
	if err == nil || a.Status != 500 || len(a.Body) != MaxAnswerBytes {
		t.Fatalf("big answer: %v, status %d, %d bytes read", err, a.Status, len(a.Body))
	}
}
