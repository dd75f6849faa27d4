package main

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"
	"google.golang.org/grpc"

	deliveryv1 "github.com/sluicehq/sluice/gen/sluice/delivery/v1"
	destinationv1 "github.com/sluicehq/sluice/gen/sluice/destination/v1"
	"github.com/sluicehq/sluice/pkg/auth"
	"github.com/sluicehq/sluice/pkg/deliverclient"
	"github.com/sluicehq/sluice/pkg/launch"
)

// chrome answers a headless Debian Chromium for one test, with the flags
// this closed network needs and a fresh profile; no such browser is a
// failure that says how to install it.
func chrome(t *testing.T) context.Context {
	t.Helper()
	path, err := exec.LookPath("chromium")
	if err != nil {
		t.Fatal("the browser test needs Debian's chromium: apt-get install chromium (.ci/run installs it)")
	}
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(path), chromedp.UserDataDir(t.TempDir()), chromedp.WindowSize(1280, 900),
		chromedp.Flag("headless", true), chromedp.Flag("no-sandbox", true), chromedp.Flag("disable-gpu", true),
		chromedp.Flag("disable-quic", true), chromedp.Flag("no-first-run", true), chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true), chromedp.Flag("disable-sync", true),
	}
	opts = append(opts, chromedp.WSURLReadTimeout(time.Minute))
	// A start on a loaded machine now and then ends before Chromium
	// listens (seen with another browser test running beside): started
	// again, at most twice.
	var last error
	for range 3 {
		alloc, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
		ctx, cancel := chromedp.NewContext(alloc)
		if last = chromedp.Do(ctx, chromedp.Navigate("about:blank")); last == nil {
			t.Cleanup(func() { cancel(); cancelAlloc() })
			return ctx
		}
		cancel()
		cancelAlloc()
		if !strings.Contains(last.Error(), "failed to start") {
			break
		}
	}
	t.Fatalf("start chromium: %v", last)
	return nil
}

// watchPage fails the test for a script that should never run (a dialog:
// what an injected alert opens) and for anything the content security
// policy refused (an inline script or style the console itself wrote).
func watchPage(t *testing.T, ctx context.Context) *[]string {
	var mu sync.Mutex
	var seen []string
	if err := chromedp.Listen(ctx, func(ev any) {
		mu.Lock()
		defer mu.Unlock()
		switch e := ev.(type) {
		case *page.EventJavascriptDialogOpening:
			seen = append(seen, "a dialog opened: "+e.Message)
			go func() {
				_, _ = chromedp.Call(ctx, page.HandleJavaScriptDialog, page.HandleJavaScriptDialogParams{Accept: true})
			}()
		case *runtime.EventConsoleAPICalled:
			if e.Type == runtime.ConsoleAPICalledTypeError {
				for _, a := range e.Args {
					seen = append(seen, "console error: "+string(a.Value))
				}
			}
		case *runtime.EventExceptionThrown:
			seen = append(seen, "exception: "+e.ExceptionDetails.Text)
		}
	}); err != nil {
		t.Fatal(err)
	}
	return &seen
}

// axeCheck runs axe-core on the page and fails on serious or critical
// violations.
func axeCheck(t *testing.T, ctx context.Context, where string) {
	t.Helper()
	src, err := os.ReadFile(filepath.Join(toolsDir(), "axe", "node_modules", "axe-core", "axe.min.js"))
	if err != nil {
		t.Fatalf("axe-core is missing: run make tools (%v)", err)
	}
	waitJS(t, ctx, `document.readyState == "complete"`)
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	// DevTools evaluation is not bound by the page's policy.
	if _, err := chromedp.Run(ctx, chromedp.Evaluate[any](string(src)+";true")); err != nil {
		t.Fatalf("%s: load axe: %v", where, err)
	}
	out, err := chromedp.Run(ctx, chromedp.Evaluate[[]struct {
		ID, Impact, Help string
		Nodes            []struct{ HTML string }
	}](`axe.run(document, {resultTypes: ["violations"]}).then(r => r.violations.map(v => ({ID: v.id, Impact: v.impact, Help: v.help, Nodes: v.nodes.map(n => ({HTML: n.html}))})))`,
		chromedp.EvalAwaitPromise))
	if err != nil {
		t.Fatalf("%s: axe: %v", where, err)
	}
	for _, v := range out {
		if v.Impact == "serious" || v.Impact == "critical" {
			b, _ := json.Marshal(v.Nodes)
			t.Errorf("%s: accessibility (%s, %s): %s: %s", where, v.Impact, v.ID, v.Help, b)
		}
	}
}

// keyboardCheck walks the page with the Tab key alone, from its first
// control, and fails for any visible link, button or form control the walk
// never reaches: every action must be reachable without a mouse. A radio
// group counts as reached when one of its buttons is (arrow keys move
// within it, as browsers do).
func keyboardCheck(t *testing.T, ctx context.Context, where string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	n, err := chromedp.Run(ctx, chromedp.Evaluate[int](`(() => {
		const all = [...document.querySelectorAll("a[href], button, input:not([type=hidden]), select, textarea, summary")]
			.filter(e => !e.disabled && e.getClientRects().length > 0 && getComputedStyle(e).visibility != "hidden");
		all.forEach((e, i) => e.dataset.kb = e.type == "radio" ? "radio:" + e.name : String(i));
		if (all.length) { all[0].focus(); }
		return all.length;
	})()`))
	if err != nil {
		t.Fatalf("%s: mark the controls: %v", where, err)
	}
	reached := map[string]bool{}
	for range n + 2 {
		at, err := chromedp.Run(ctx, chromedp.Evaluate[string](`document.activeElement && document.activeElement.dataset.kb || ""`))
		if err != nil {
			t.Fatalf("%s: read the focus: %v", where, err)
		}
		reached[at] = true
		if err := chromedp.Do(ctx, chromedp.KeyEvent(kb.Tab)); err != nil {
			t.Fatalf("%s: Tab: %v", where, err)
		}
	}
	missed, err := chromedp.Run(ctx, chromedp.Evaluate[[]string](`[...document.querySelectorAll("[data-kb]")].filter(e => !`+
		`(`+jsSet(reached)+`).has(e.dataset.kb)).map(e => e.outerHTML.slice(0, 160))`))
	if err != nil {
		t.Fatalf("%s: %v", where, err)
	}
	for _, m := range missed {
		t.Errorf("%s: the Tab key never reaches %s", where, m)
	}
}

// jsSet writes a JavaScript Set of the keys of m.
func jsSet(m map[string]bool) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, strconv.Quote(k))
	}
	return "new Set([" + strings.Join(keys, ",") + "])"
}

func toolsDir() string {
	if d := os.Getenv("SLUICE_TOOLS_DIR"); d != "" {
		return d
	}
	home, _ := os.UserHomeDir()
	return filepath.Join(home, ".cache", "sluice", "tools")
}

// waitJS waits, up to 20 s, for a JavaScript condition on the page.
func waitJS(t *testing.T, ctx context.Context, cond string) {
	t.Helper()
	for range 200 {
		ectx, cancel := context.WithTimeout(ctx, 5*time.Second)
		ok, err := chromedp.Run(ectx, chromedp.Evaluate[bool](cond))
		cancel()
		if err == nil && ok {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("the page never came to: %s", cond)
}

// shoot saves a screenshot of the page as docs/console/{name}.png when
// SLUICE_SCREENSHOTS names the folder (make screenshots).
func shoot(t *testing.T, ctx context.Context, name string) {
	dir := os.Getenv("SLUICE_SCREENSHOTS")
	if dir == "" {
		return
	}
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, name+".png"), png, 0o644); err != nil {
		t.Fatal(err)
	}
}

// The brief's story in a real browser: log in through the identity
// provider, the Settings (a credential and its test, a destination and
// its preview and connection test), then the bell counts the
// failed delivery, View Workflow, Show Resolutions, the action's steps,
// the bucket corrected, Resolve, and the page follows the rerun to
// SUCCEEDED without a reload. No injected script runs, the content
// security policy refuses nothing the console wrote, and axe-core finds
// no serious or critical accessibility violation on any page.
func TestConsoleInABrowser(t *testing.T) {
	// Users log in through an identity provider, its own process; the
	// test's own gRPC calls keep the development key, trusted beside it.
	idp, consoleAddr, callback := consoleIdP(t, "ada@acme.test:ada-pw:acme:"+auth.PolicyAdministrator, "bob@acme.test:bob-pw:acme:")
	w := startWorkflows(t, func(c *serveConfig) {
		key, err := auth.LoadOrCreateSigningKey(launch.DevUserKeyPath(c.DataDir))
		if err != nil {
			t.Fatal(err)
		}
		pem, err := auth.EncodePublicKey(key.Public().(ed25519.PublicKey))
		if err != nil {
			t.Fatal(err)
		}
		pub := filepath.Join(c.DataDir, "test-user.pub.pem")
		if err := os.WriteFile(pub, pem, 0o644); err != nil {
			t.Fatal(err)
		}
		c.PublicKeys, c.Issuer.URL, c.ConsoleAddr = []string{pub}, idp.URL, consoleAddr
		c.Console.OIDC.Issuer, c.Console.OIDC.ClientID, c.Console.OIDC.ClientSecret, c.Console.OIDC.RedirectURL = idp.URL, "console", "s3cret", callback
	})
	w.mayUseAnyBucket(t)
	ctx := context.Background()

	b := chrome(t)
	problems := watchPage(t, b)
	step := func(where string, actions ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		sctx, cancel := context.WithTimeout(b, 30*time.Second)
		defer cancel()
		if err := chromedp.Do(sctx, actions...); err != nil {
			ectx, cancel := context.WithTimeout(b, 5*time.Second)
			defer cancel()
			page, _ := chromedp.Run(ectx, chromedp.Evaluate[string](`location.href + " the page says: " + document.body.innerText`))
			t.Fatalf("%s: %v\nat %.1500s", where, err, page)
		}
	}
	// text reads an element's text in one evaluation: no node handle a
	// swap or a late load could pull away.
	text := func(sel string) string {
		t.Helper()
		var last error
		for range 50 {
			s, err := chromedp.Run(b, chromedp.Evaluate[string](`(e => e ? e.innerText : "")(document.querySelector(`+strconv.Quote(sel)+`))`))
			if err == nil && s != "" {
				return s
			}
			last = err
			time.Sleep(100 * time.Millisecond)
		}
		t.Fatalf("text of %s: %v", sel, last)
		return ""
	}
	page := func(name string) { shoot(t, b, name); axeCheck(t, b, name); keyboardCheck(t, b, name) }

	login := func(user, password string) {
		t.Helper()
		step("log in as "+user, chromedp.Navigate(w.r.console+"/login"), chromedp.WaitVisible(chromedp.Search(`//a[text()="Log in with your identity provider"]`)),
			chromedp.Click(chromedp.Search(`//a[text()="Log in with your identity provider"]`)), chromedp.WaitVisible(chromedp.ID("username")),
			chromedp.SetValue(chromedp.ID("username"), user), chromedp.SetValue(chromedp.ID("password"), password), chromedp.Submit(chromedp.ID("password")),
			chromedp.WaitVisible(chromedp.CSS(".bell")))
	}
	step("the login page", chromedp.Navigate(w.r.console+"/login"), chromedp.WaitVisible(chromedp.CSS("main h1")))
	page("login")
	login("ada@acme.test", "ada-pw")

	// Settings, Credentials, Add credential: an iam-credential with a wrong
	// secret, Continue, then the right one.
	step("Add credential", chromedp.Click(chromedp.Search(`//nav//a[text()="Credentials"]`)), chromedp.WaitVisible(chromedp.Search(`//a[text()="Add credential"]`)),
		chromedp.Click(chromedp.Search(`//a[text()="Add credential"]`)), chromedp.WaitVisible(chromedp.ID("access_key_id")))
	page("credential-new")
	// A secret that is not one: the form comes back with the refusal beside
	// the field, what was typed kept, the secret not.
	step("Save a malformed secret", chromedp.SetValue(chromedp.ID("id"), "exports"), chromedp.SetValue(chromedp.ID("bucket"), w.bucket),
		chromedp.SetValue(chromedp.ID("access_key_id"), w.key), chromedp.SetValue(chromedp.ID("secret_access_key"), "short"),
		chromedp.Click(chromedp.Search(`//button[text()="Save"]`)), chromedp.WaitVisible(chromedp.ID("secret_access_key-error")))
	if got, err := chromedp.Run(b, chromedp.Evaluate[string](`document.getElementById("bucket").value + "|" + document.getElementById("secret_access_key").value`)); err != nil || got != w.bucket+"|" {
		t.Errorf("the form after a refusal: %q %v", got, err)
	}
	page("credential-refused")
	step("Save", chromedp.SetValue(chromedp.ID("id"), "exports"), chromedp.SetValue(chromedp.ID("display_name"), xssName),
		chromedp.SetValue(chromedp.ID("bucket"), w.bucket), chromedp.SetValue(chromedp.ID("region"), w.m.Region),
		chromedp.SetValue(chromedp.ID("access_key_id"), w.key), chromedp.SetValue(chromedp.ID("secret_access_key"), "wJalrXUtnFEMI0K7MDENG0bPxRfiCYEXAMPLEKEY"),
		chromedp.Click(chromedp.Search(`//button[text()="Save"]`)), chromedp.WaitVisible(chromedp.Search(`//button[contains(text(),"Continue")]`)),
		chromedp.Click(chromedp.Search(`//button[contains(text(),"Continue")]`)), chromedp.WaitVisible(chromedp.CSS(".checks")))
	if got := text("main"); !strings.Contains(got, "A check failed") || strings.Contains(got, "wJalrXUtnFEMI0K7MDENG0bPxRfiCYEXAMPLEKEY") {
		t.Errorf("the test of a wrong secret: %.1000s", got)
	}
	page("credential-test-failed")
	step("rotate the secret", chromedp.SetValue(chromedp.ID("new-secret"), w.secret), chromedp.Click(chromedp.Search(`//button[text()="Save the new secret"]`)),
		chromedp.WaitNotPresent(chromedp.CSS(".checks")), // the page after the save, not the one before
		chromedp.WaitVisible(chromedp.Search(`//button[contains(text(),"Continue")]`)),
		chromedp.Click(chromedp.Search(`//button[contains(text(),"Continue")]`)), chromedp.WaitVisible(chromedp.CSS(".checks")))
	if got := text("main"); !strings.Contains(got, "Every check passed") || strings.Contains(got, w.secret) {
		t.Errorf("the test of the right secret: %.1000s", got)
	}
	page("credential")
	step("the credentials", chromedp.Click(chromedp.Search(`//nav//a[text()="Credentials"]`)), chromedp.WaitVisible(chromedp.CSS("main table")))
	page("credentials")

	// Destinations, Add destination: the settings, the live Preview, Save,
	// Test connection.
	step("Add destination", chromedp.Click(chromedp.Search(`//nav//a[text()="Destinations"]`)), chromedp.WaitVisible(chromedp.Search(`//a[text()="Add destination"]`)),
		chromedp.Click(chromedp.Search(`//a[text()="Add destination"]`)), chromedp.WaitVisible(chromedp.ID("format")),
		chromedp.SetValue(chromedp.ID("id"), "typo"), chromedp.SetValue(chromedp.ID("display_name"), `Typo <svg onload=alert(4)>`), chromedp.SetValue(chromedp.ID("prefix"), "typo/"),
		chromedp.SetValue(chromedp.ID("bucket_override"), w.bucket+"-typo"), chromedp.SetValue(chromedp.ID("description"), xssLabel),
		chromedp.SetValue(chromedp.ID("split_rows"), "1000"),
		chromedp.SetValue(chromedp.ID("format"), "ndjson"), chromedp.Evaluate[chromedp.Void](`document.getElementById("format").dispatchEvent(new Event("change", {bubbles: true}))`))
	// htmx swaps the preview in as each change arrives: asked of the page
	// as a whole, so that no swap can pull a node from under the check.
	waitJS(t, b, `[...document.querySelectorAll("#preview code")].some(c => c.textContent.endsWith(".ndjson"))`)
	page("destination-new")
	step("Save the destination", chromedp.Click(chromedp.Search(`//button[text()="Save"]`)), chromedp.WaitVisible(chromedp.Search(`//button[text()="Test connection"]`)),
		chromedp.Click(chromedp.Search(`//button[text()="Test connection"]`)), chromedp.WaitVisible(chromedp.CSS(".checks")))
	if got := text("main"); !strings.Contains(got, "A check failed") {
		t.Errorf("testing a destination whose bucket does not exist: %.1000s", got)
	}
	page("destination")

	// A delivery to it fails (sent outside the console, as the CLI does).
	recs := customerBatches(t, 2000, 500)
	_, err := deliverclient.DeliverStream(ctx, w.delivs, &deliveryv1.DeliveryStart{Destination: production + "/destinations/typo", OutputName: "customers-2026-12-03", Labels: map[string]string{"note": xssLabel}},
		bytes.NewReader(ipcBytes(t, recs[0].Schema(), recs...)), deliverclient.Options{CallOptions: []grpc.CallOption{w.admin}})
	failed := w.namedIn(t, err)

	step("the deliveries", chromedp.Click(chromedp.Search(`//nav//a[text()="Deliveries"]`)), chromedp.WaitVisible(chromedp.CSS("#rows")))
	if got := strings.TrimSpace(text(".bell .count")); got != "1" {
		t.Errorf("the bell counts %q, want 1", got)
	}
	page("deliveries")
	step("the notifications pane", chromedp.Click(chromedp.CSS(".bell")), chromedp.WaitVisible(chromedp.CSS(".alerts")))
	page("notifications")
	step("View Workflow", chromedp.Click(chromedp.Search(`//a[text()="View Workflow"]`)), chromedp.WaitVisible(chromedp.CSS(".steps")))
	if got := text("main"); !strings.Contains(got, "BUCKET_NOT_FOUND") {
		t.Errorf("the workflow page: %.500s", got)
	}
	step("Show Resolutions", chromedp.Click(chromedp.Search(`//a[text()="Show Resolutions"]`)), chromedp.WaitVisible(chromedp.CSS(".actions")),
		chromedp.Click(chromedp.Search(`//a[text()="Correct the bucket name"]`)), chromedp.WaitVisible(chromedp.ID("action-title")))
	page("workflow")
	// The action's link opens the destination: correct the bucket there.
	step("correct the bucket", chromedp.Click(chromedp.Search(`//section[@class="action"]//a[text()="typo"]`)), chromedp.WaitVisible(chromedp.ID("bucket_override")),
		chromedp.SetValue(chromedp.ID("bucket_override"), w.bucket), chromedp.Click(chromedp.Search(`//form[contains(@action,"/edit")]//button[text()="Save"]`)),
		chromedp.WaitVisible(chromedp.Search(`//dd[text()="`+w.bucket+`"]`)))
	// Resolve with the keyboard alone: Tab from the top of the page to
	// the button, then Enter.
	step("Resolve", chromedp.Navigate(w.r.console+"/workflows/"+deliveryIDOf(failed.GetName())+"?action=fix-bucket-name"), chromedp.WaitVisible(chromedp.ID("action-title")))
	for i := 0; ; i++ {
		if i == 60 {
			t.Fatal("Tab never reached the Resolve button")
		}
		step("Tab", chromedp.KeyEvent(kb.Tab))
		if at, _ := chromedp.Run(b, chromedp.Evaluate[string](`document.activeElement.textContent`)); at == "Resolve" {
			break
		}
	}
	step("Resolve", chromedp.KeyEvent(kb.Enter), chromedp.WaitVisible(chromedp.Search(`//span[contains(@class,"state") and text()="SUCCEEDED"]`)))
	if got := text("#flow"); !strings.Contains(got, "run 2") {
		t.Errorf("after Resolve: %.500s", got)
	}
	step("the delivery", chromedp.Click(chromedp.Search(`//a[text()="the delivery"]`)), chromedp.WaitVisible(chromedp.CSS(".facts")))
	if got := text("main"); !strings.Contains(got, ".ndjson") || !strings.Contains(got, xssLabel) {
		t.Errorf("the delivery page: %.800s", got)
	}
	page("delivery")
	step("the workflows", chromedp.Click(chromedp.Search(`//nav//a[text()="Workflows"]`)), chromedp.WaitVisible(chromedp.CSS("main table")))
	page("workflows")
	step("the destinations", chromedp.Click(chromedp.Search(`//nav//a[text()="Destinations"]`)), chromedp.WaitVisible(chromedp.CSS("main table")))
	page("destinations")
	if d, err := w.delivs.GetDelivery(ctx, &deliveryv1.GetDeliveryRequest{Name: failed.GetName()}, w.admin); err != nil || d.GetState() != deliveryv1.DeliveryState_DELIVERY_STATE_SUCCEEDED {
		t.Errorf("the delivery after the console's Resolve: %v %v", d.GetState(), err)
	}

	// Promote: a destination tried in the sandbox goes to production.
	step("the sandbox", chromedp.Navigate(w.r.console+"/destinations?env=production"), chromedp.WaitVisible(chromedp.ID("env")),
		chromedp.SetValue(chromedp.ID("env"), "sandbox")) // its change submits the environment form
	waitJS(t, b, `location.search.includes("env=sandbox") && document.readyState == "complete"`)
	step("a sandbox credential", chromedp.Navigate(w.r.console+"/credentials/new?env=sandbox"), chromedp.WaitVisible(chromedp.ID("access_key_id")),
		chromedp.SetValue(chromedp.ID("id"), "exports"), chromedp.SetValue(chromedp.ID("bucket"), w.bucket), chromedp.SetValue(chromedp.ID("region"), w.m.Region),
		chromedp.SetValue(chromedp.ID("access_key_id"), w.key), chromedp.SetValue(chromedp.ID("secret_access_key"), w.secret),
		chromedp.Click(chromedp.Search(`//button[text()="Save"]`)), chromedp.WaitVisible(chromedp.Search(`//button[contains(text(),"Continue")]`)))
	step("a sandbox destination", chromedp.Navigate(w.r.console+"/destinations/new?env=sandbox"), chromedp.WaitVisible(chromedp.ID("format")),
		chromedp.SetValue(chromedp.ID("id"), "staged"), chromedp.SetValue(chromedp.ID("prefix"), "staged/"),
		chromedp.Click(chromedp.Search(`//button[text()="Save"]`)), chromedp.WaitVisible(chromedp.Search(`//button[text()="Promote to production"]`)))
	page("destination-sandbox")
	// Never delivered to: refused, saying why; an administrator forces it.
	step("Promote", chromedp.Click(chromedp.Search(`//button[text()="Promote to production"]`)),
		chromedp.WaitNotPresent(chromedp.Search(`//button[text()="Promote to production"]`)), chromedp.WaitVisible(chromedp.CSS("main h1")))
	if got := text("main"); !strings.Contains(got, "successful test delivery") {
		t.Errorf("promoting a destination never delivered to: %.800s", got)
	}
	step("Promote, forced", chromedp.Navigate(w.r.console+"/destinations/staged?env=sandbox"), chromedp.WaitVisible(chromedp.ID("force")), chromedp.Click(chromedp.ID("force")),
		chromedp.Click(chromedp.Search(`//button[text()="Promote to production"]`)),
		chromedp.WaitNotPresent(chromedp.Search(`//button[text()="Promote to production"]`)), chromedp.WaitVisible(chromedp.CSS("main h1")))
	if got := text("main"); !strings.Contains(got, "Destination staged") {
		t.Errorf("after Promote: %.800s", got)
	}
	if _, err := w.dests.GetDestination(ctx, &destinationv1.GetDestinationRequest{Name: production + "/destinations/staged"}, w.admin); err != nil {
		t.Errorf("the promoted destination in production: %v", err)
	}

	// Another user, without policies: the admin-only destination is not
	// listed, and its page answers not found.
	step("mark it admin only", chromedp.Navigate(w.r.console+"/destinations/typo"), chromedp.WaitVisible(chromedp.ID("admin_only")),
		chromedp.Click(chromedp.ID("admin_only")), chromedp.Click(chromedp.Search(`//form[contains(@action,"/edit")]//button[text()="Save"]`)),
		chromedp.WaitVisible(chromedp.Search(`//dd[starts-with(text(),"admin only")]`)),
		chromedp.Click(chromedp.Search(`//button[text()="Log out"]`)),
		chromedp.WaitVisible(chromedp.Search(`//a[text()="Log in with your identity provider"]`))) // the page after logging out
	login("bob@acme.test", "bob-pw")
	step("the destinations", chromedp.Navigate(w.r.console+"/destinations"), chromedp.WaitVisible(chromedp.CSS("main table")))
	if got := text("main"); strings.Contains(got, "typo") {
		t.Errorf("a user without policies sees the admin-only destination: %.500s", got)
	}
	step("its page", chromedp.Navigate(w.r.console+"/destinations/typo"), chromedp.WaitVisible(chromedp.CSS("main h1")))
	if got := text("main"); !strings.Contains(got, "Not found") {
		t.Errorf("a user without policies opened the admin-only destination: %.500s", got)
	}
	for _, p := range *problems {
		t.Errorf("in the browser: %s", p)
	}
}
