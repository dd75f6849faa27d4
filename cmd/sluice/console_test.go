package main

import (
	"bytes"
	"context"
	"io"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/fieldmaskpb"

	credentialv1 "github.com/sluicehq/sluice/gen/sluice/credential/v1"
	deliveryv1 "github.com/sluicehq/sluice/gen/sluice/delivery/v1"
	destinationv1 "github.com/sluicehq/sluice/gen/sluice/destination/v1"
	"github.com/sluicehq/sluice/pkg/auth"
	"github.com/sluicehq/sluice/pkg/deliverclient"
	"github.com/sluicehq/sluice/pkg/localserver"
	"github.com/sluicehq/sluice/pkg/testenv"
)

// browser is an HTTP client with cookies, as a browser keeps them, that
// reads pages back.
type browser struct {
	t    testing.TB
	base string
	c    *http.Client
}

func newBrowser(t testing.TB, base string) *browser {
	jar, _ := cookiejar.New(nil)
	return &browser{t: t, base: base, c: &http.Client{Jar: jar, Timeout: 30 * time.Second}}
}

// get answers a page's status and body.
func (b *browser) get(path string) (int, string) {
	b.t.Helper()
	resp, err := b.c.Get(b.base + path)
	if err != nil {
		b.t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

// post sends a form from the console's own pages (same origin), or, with
// site, from another site.
func (b *browser) post(path string, form url.Values, site string) (int, string) {
	b.t.Helper()
	req, _ := http.NewRequest(http.MethodPost, b.base+path, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Sec-Fetch-Site", "same-origin")
	if site != "" {
		req.Header.Set("Sec-Fetch-Site", site)
	}
	resp, err := b.c.Do(req)
	if err != nil {
		b.t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

// devLogin logs in with the development login.
func (b *browser) devLogin(subject string, policies ...string) {
	b.t.Helper()
	form := url.Values{"subject": {subject}, "tenant": {"acme"}, "policy": policies}
	if code, body := b.post("/login/dev", form, ""); code != http.StatusOK || !strings.Contains(body, subject) {
		b.t.Fatalf("development login: %d %.500s", code, body)
	}
}

// What a user types where a page shows it: an output name (no slash
// allowed there) and a label.
const (
	xssName  = `"><img src=x onerror=alert(1)><b>bold`
	xssLabel = `"><script>alert(2)</script>`
)

// The console end to end, through the development login: a failed
// delivery rings the bell; its workflow shows the steps, Show Resolutions,
// the action and Resolve, and the page follows the rerun to SUCCEEDED.
// What users control is escaped; a cross-site post is refused; a user
// without policies cannot open a delivery to an admin-only destination,
// exactly as one that does not exist; every page carries the security
// headers and no inline script.
func TestConsoleResolvesAFailedDelivery(t *testing.T) {
	w := startWorkflows(t, nil)
	w.mayUseAnyBucket(t)
	ctx := context.Background()
	typo := w.destination(t, "typo", &destinationv1.Destination{Format: csvFormat(), Description: xssLabel, Access: &destinationv1.Access{AdminOnly: true},
		BucketOverride: w.bucket + "-typo"})
	recs := customerBatches(t, 2000, 500)
	_, err := deliverclient.DeliverStream(ctx, w.delivs, &deliveryv1.DeliveryStart{Destination: typo.GetName(), OutputName: xssName, Labels: map[string]string{"note": xssLabel}}, bytes.NewReader(ipcBytes(t, recs[0].Schema(), recs...)),
		deliverclient.Options{CallOptions: []grpc.CallOption{w.admin}})
	failed := w.namedIn(t, err)
	if failed.GetError().GetReason() != "BUCKET_NOT_FOUND" {
		t.Fatalf("the delivery: %v", failed.GetError())
	}
	id := deliveryIDOf(failed.GetName())

	ada := newBrowser(t, w.r.console)
	if code, _ := ada.get("/deliveries"); code != http.StatusOK { // the login page, after the redirect
		t.Fatalf("before logging in: %d", code)
	}
	if u, _ := url.Parse(w.r.console + "/deliveries"); len(ada.c.Jar.Cookies(u)) != 0 {
		t.Fatal("a session before logging in")
	}
	ada.devLogin("ada@acme.test", auth.PolicyAdministrator)
	pages := map[string]string{}
	for _, p := range []string{"/deliveries", "/deliveries/" + id, "/workflows", "/notifications", "/workflows/" + id + "?resolutions=1&action=fix-bucket-name"} {
		req, _ := http.NewRequest(http.MethodGet, w.r.console+p, nil)
		resp, err := ada.c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("%s: %d %.300s", p, resp.StatusCode, body)
		}
		pages[p] = string(body)
		for h, want := range map[string]string{"Content-Security-Policy": "script-src 'self'", "X-Frame-Options": "DENY", "X-Content-Type-Options": "nosniff"} {
			if !strings.Contains(resp.Header.Get(h), want) {
				t.Errorf("%s: %s is %q", p, h, resp.Header.Get(h))
			}
		}
		if strings.Contains(string(body), "<script>") || strings.Contains(string(body), "<img src=x") || strings.Contains(string(body), "<b>bold") {
			t.Errorf("%s renders a user's text as markup", p)
		}
		if strings.Contains(string(body), "style=") || strings.Contains(string(body), "<style") {
			t.Errorf("%s has inline style, which the policy refuses", p)
		}
	}
	if !strings.Contains(pages["/deliveries"], "&lt;img src=x onerror=alert(1)&gt;&lt;b&gt;bold") {
		t.Errorf("the deliveries page does not show the output name, escaped")
	}
	if !strings.Contains(pages["/deliveries/"+id], "&lt;script&gt;alert(2)&lt;/script&gt;") {
		t.Errorf("the delivery page does not show its label, escaped")
	}
	if !strings.Contains(pages["/notifications"], "View Workflow") || !strings.Contains(pages["/deliveries"], `<span class="count">1</span>`) {
		t.Errorf("the bell and the notifications pane do not show the failure")
	}
	wf := pages["/workflows/"+id+"?resolutions=1&action=fix-bucket-name"]
	for _, want := range []string{"upload", "FAILED", "Correct the bucket name", "Resolve", "BUCKET_NOT_FOUND"} {
		if !strings.Contains(wf, want) {
			t.Errorf("the workflow page does not say %q", want)
		}
	}
	// A forged post from another site is refused before it reaches a
	// service.
	if code, _ := ada.post("/workflows/"+id+"/resolve", url.Values{"action": {"retry-task"}}, "cross-site"); code != http.StatusForbidden {
		t.Errorf("a cross-site resolve: %d", code)
	}
	if wfs := w.workflow(t, failed.GetWorkflow()); wfs.GetState() != deliveryv1.WorkflowState_WORKFLOW_STATE_FAILED {
		t.Fatalf("the cross-site post changed the workflow: %v", wfs.GetState())
	}
	// A user without policies: not found, as if it did not exist.
	bob := newBrowser(t, w.r.console)
	bob.devLogin("bob@acme.test")
	if code, body := bob.get("/deliveries/" + id); code != http.StatusNotFound || !strings.Contains(body, "Not found") {
		t.Errorf("a user who may not use the destination opened its delivery: %d", code)
	}
	if code, body := bob.post("/workflows/"+id+"/resolve", url.Values{"action": {"retry-task"}}, ""); code != http.StatusNotFound {
		t.Errorf("a user who may not use the destination resolved its workflow: %d %.300s", code, body)
	}

	// The fix, then Resolve from the page: it follows the rerun.
	if _, err := w.dests.UpdateDestination(ctx, &destinationv1.UpdateDestinationRequest{Destination: &destinationv1.Destination{Name: typo.GetName(), BucketOverride: w.bucket},
		UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"bucket_override"}}}, w.admin); err != nil {
		t.Fatal(err)
	}
	if code, body := ada.post("/workflows/"+id+"/resolve?env=production", url.Values{"action": {"fix-bucket-name"}}, ""); code != http.StatusOK {
		t.Fatalf("Resolve: %d %.500s", code, body)
	}
	var page string
	for i := 0; !strings.Contains(page, ">SUCCEEDED<"); i++ {
		if i == 100 {
			t.Fatalf("the workflow page never showed the rerun succeeding:\n%.2000s", page)
		}
		time.Sleep(100 * time.Millisecond)
		_, page = ada.get("/workflows/" + id + "?partial=flow")
	}
	if !strings.Contains(page, "run 2") || !strings.Contains(page, "fix-bucket-name") {
		t.Errorf("the workflow after Resolve: %.1000s", page)
	}
	if _, body := ada.get("/deliveries/" + id); !strings.Contains(body, "out_00001.csv") && !strings.Contains(body, ".csv") {
		t.Errorf("the delivery page does not list its objects")
	}
	// Logging out ends the session.
	ada.post("/logout", nil, "")
	if _, body := ada.get("/deliveries"); !strings.Contains(body, "Log in to Sluice") {
		t.Error("still logged in after logging out")
	}
	if code, _ := ada.post("/notifications/x/acknowledge", nil, ""); code != http.StatusOK { // to the login page
		t.Errorf("acknowledging after logging out: %d", code)
	}
}

// Logging in to the console through an identity provider (the test
// provider, as its own process): authorization code with PKCE, the token
// kept on the server (never in a page), a session cookie that scripts
// cannot read; a callback that was not started here is refused.
func TestConsoleLogsInThroughAnIdentityProvider(t *testing.T) {
	idp, consoleAddr, callback := consoleIdP(t, "ada@acme.test:pw:acme:"+auth.PolicyAdministrator)
	r := startServeWith(t, func(c *serveConfig) {
		c.Issuer.URL = idp.URL
		c.ConsoleAddr = consoleAddr
		c.Console.OIDC.Issuer, c.Console.OIDC.ClientID, c.Console.OIDC.ClientSecret, c.Console.OIDC.RedirectURL = idp.URL, "console", "s3cret", callback
	})
	b := newBrowser(t, r.console)
	if _, body := b.get("/login"); !strings.Contains(body, "/auth/start") || strings.Contains(body, "Development login") {
		t.Fatalf("the login page with a provider: %.500s", body)
	}
	// The provider's form, reached through the console's redirect.
	resp, err := b.c.Get(r.console + "/auth/start")
	if err != nil {
		t.Fatal(err)
	}
	form, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	authID := resp.Request.URL.Query().Get("id")
	if authID == "" || !strings.Contains(string(form), "Sign in") {
		t.Fatalf("the provider's login form: %s %.300s", resp.Request.URL, form)
	}
	resp, err = b.c.PostForm(idp.URL+"/login", url.Values{"id": {authID}, "username": {"ada@acme.test"}, "password": {"pw"}})
	if err != nil {
		t.Fatal(err)
	}
	page, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(page), "ada@acme.test") || !strings.Contains(string(page), "Deliveries") {
		t.Fatalf("after the provider's login: %d %s %.500s", resp.StatusCode, resp.Request.URL, page)
	}
	u, _ := url.Parse(r.console)
	for _, c := range b.c.Jar.Cookies(u) {
		if strings.Count(c.Value, ".") == 2 {
			t.Errorf("a cookie holds a token: %s", c.Name)
		}
	}
	if strings.Contains(string(page), "eyJ") {
		t.Error("the page holds a token")
	}
	raw := resp.Request.Response // the callback's answer set the cookie
	for ; raw != nil; raw = raw.Request.Response {
		for _, c := range raw.Cookies() {
			if c.Name == "sluice_session" && (!c.HttpOnly || c.SameSite != http.SameSiteLaxMode) {
				t.Errorf("the session cookie: HttpOnly %v, SameSite %v", c.HttpOnly, c.SameSite)
			}
		}
	}
	// A callback the console did not start.
	other := newBrowser(t, r.console)
	if _, body := other.get("/auth/callback?state=forged&code=x"); !strings.Contains(body, "not started here") {
		t.Errorf("a forged callback: %.300s", body)
	}
	if code, body := other.get("/deliveries"); code != http.StatusOK || !strings.Contains(body, "Log in to Sluice") {
		t.Errorf("a forged callback opened a session: %d", code)
	}
}

// Every setting of the Destination settings dialog reaches the API as the
// form says, read back with GetDestination.
func TestConsoleDestinationDialogSetsEverySetting(t *testing.T) {
	w := startWorkflows(t, nil)
	b := newBrowser(t, w.r.console)
	b.devLogin("ada@acme.test", auth.PolicyAdministrator)
	form := url.Values{"credential": {leafOf(w.cred)}, "id": {"every"}, "display_name": {"Every setting"}, "description": {"d"},
		"admin_only": {"1"}, "allow_limited_pii": {"1"}, "prefix": {"every/"}, "format": {"parquet"}, "parquet_codec": {"zstd"}, "row_group_rows": {"5000"},
		"row_number": {"1"}, "row_number_column": {"n"}, "compression": {"none"}, "split_rows": {"2000"}, "success_file": {"1"}, "manifest": {"1"},
		"encryption": {"sse_s3"}, "storage_class": {"standard_ia"}, "canned_acl": {"bucket_owner_full_control"}, "expected_bucket_owner": {"123456789012"},
		"partition_by": {"x:week"}, "partition_time_zone": {"Europe/Paris"}}
	// A partition transform that does not exist: refused beside its field.
	if code, body := b.post("/destinations?env=production", form, ""); code != http.StatusBadRequest || !strings.Contains(body, "the transform is one of") ||
		!strings.Contains(body, `value="x:week"`) {
		t.Errorf("a wrong partition transform: %d %.800s", code, body)
	}
	form.Set("partition_by", "country, signup_date:day")
	if code, body := b.post("/destinations?env=production", form, ""); code != http.StatusOK || !strings.Contains(body, "Every setting") {
		t.Fatalf("Save: %d %.800s", code, body)
	}
	d, err := w.dests.GetDestination(context.Background(), &destinationv1.GetDestinationRequest{Name: production + "/destinations/every"}, w.admin)
	if err != nil {
		t.Fatal(err)
	}
	p := d.GetFormat().GetParquet()
	if p.GetCodec() != destinationv1.ParquetCodec_PARQUET_CODEC_ZSTD || p.GetRowGroupRows() != 5000 || !d.GetAccess().GetAdminOnly() || !d.GetAccess().GetAllowLimitedPii() ||
		d.GetRowNumber().GetColumnName() != "n" || d.GetSplit().GetMaxRows() != 2000 || !d.GetSuccessFile() || !d.GetManifest() ||
		d.GetEncryption().GetKind() != destinationv1.EncryptionKind_ENCRYPTION_KIND_SSE_S3 || d.GetStorageClass() != destinationv1.StorageClass_STORAGE_CLASS_STANDARD_IA ||
		d.GetCannedAcl() != destinationv1.CannedAcl_CANNED_ACL_BUCKET_OWNER_FULL_CONTROL || d.GetExpectedBucketOwner() != "123456789012" ||
		len(d.GetPartitionBy().GetFields()) != 2 || d.GetPartitionBy().GetFields()[1].GetTransform() != destinationv1.PartitionTransform_PARTITION_TRANSFORM_DAY ||
		d.GetPartitionBy().GetTimeZone() != "Europe/Paris" {
		t.Errorf("stored: %v", d)
	}
	// Configure destination shows what is stored, and saves every setting.
	_, page := b.get("/destinations/every?env=production")
	for _, want := range []string{`<option value="parquet" selected>`, `<option value="zstd" selected>`, `id="admin_only" name="admin_only" value="1" checked`,
		`name="split_rows" inputmode="numeric" value="2000"`, `<option value="standard_ia" selected>`} {
		if !strings.Contains(page, want) {
			t.Errorf("Configure destination does not show %s", want)
		}
	}
	if !strings.Contains(page, `value="country, signup_date:day"`) || !strings.Contains(page, "<code>country, signup_date:day</code>, times in Europe/Paris") {
		t.Error("the destination page does not show the partition fields")
	}
	edit := url.Values{"etag": {d.GetEtag()}, "credential": {leafOf(w.cred)}, "display_name": {"Every setting"}, "prefix": {"every/"}, "format": {"tsv"},
		"header": {"1"}, "quote_mode": {"all"}, "null_value": {`\N`}, "compression": {"gzip"}, "split_bytes": {"1073741824"}, "tags": {"team=growth\ncost-centre = 42\n"}}
	if code, body := b.post("/destinations/every/edit?env=production", edit, ""); code != http.StatusOK {
		t.Fatalf("Configure destination, Save: %d %s", code, body[strings.Index(body, "<main"):])
	}
	d, err = w.dests.GetDestination(context.Background(), &destinationv1.GetDestinationRequest{Name: production + "/destinations/every"}, w.admin)
	if err != nil {
		t.Fatal(err)
	}
	if c := d.GetFormat().GetDelimited(); c.GetDelimiter() != "\t" || c.GetQuoteMode() != destinationv1.QuoteMode_QUOTE_MODE_ALL || d.GetAccess().GetAdminOnly() ||
		d.GetCompression().GetKind() != destinationv1.CompressionKind_COMPRESSION_KIND_GZIP || d.GetSplit().GetMaxBytes() != 1<<30 || d.GetSplit().GetMaxRows() != 0 ||
		d.GetTags()["team"] != "growth" || d.GetTags()["cost-centre"] != "42" || d.GetManifest() || d.GetStorageClass() != destinationv1.StorageClass_STORAGE_CLASS_UNSPECIFIED ||
		d.GetPartitionBy() != nil {
		t.Errorf("after Configure destination: %v", d)
	}
	// A template the service refuses: the dialog comes back with the
	// complaint beside the field and every choice as it was typed.
	edit.Set("etag", d.GetEtag())
	edit.Set("filename_template", "{{no_such_variable}}")
	code, body := b.post("/destinations/every/edit?env=production", edit, "")
	if code != http.StatusBadRequest || !strings.Contains(body, `<option value="tsv" selected>`) || !strings.Contains(body, `<option value="gzip" selected>`) ||
		!strings.Contains(body, `value="{{no_such_variable}}"`) || !strings.Contains(body, `no_such_variable`) {
		t.Errorf("a refused Configure destination: %d %.3000s", code, body)
	}

	// A CSV destination: the delimited settings.
	form = url.Values{"credential": {leafOf(w.cred)}, "id": {"piped"}, "format": {"psv"}, "quote_mode": {"all"}, "line_ending": {"crlf"}, "null_value": {"NULL"}}
	if code, body := b.post("/destinations?env=production", form, ""); code != http.StatusOK {
		t.Fatalf("Save: %d %.800s", code, body)
	}
	d, err = w.dests.GetDestination(context.Background(), &destinationv1.GetDestinationRequest{Name: production + "/destinations/piped"}, w.admin)
	if err != nil {
		t.Fatal(err)
	}
	if c := d.GetFormat().GetDelimited(); c.GetDelimiter() != "|" || c.GetQuoteMode() != destinationv1.QuoteMode_QUOTE_MODE_ALL || c.GetLineEnding() != destinationv1.LineEnding_LINE_ENDING_CRLF ||
		c.GetNullValue() != "NULL" || c.Header == nil || *c.Header {
		t.Errorf("stored: %v", c)
	}
}

func leafOf(name string) string { return name[strings.LastIndex(name, "/")+1:] }

// consoleIdP starts the test identity provider with users and one client
// whose callback is the console's, on an address chosen here: the
// provider must know it before serve starts.
func consoleIdP(t *testing.T, users ...string) (idp *localserver.IdP, consoleAddr, callback string) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	consoleAddr = ln.Addr().String()
	ln.Close()
	callback = "http://" + consoleAddr + "/auth/callback"
	idp = testenv.NewIdP(t, localserver.IdPOptions{Users: users, ClientID: "console", ClientSecret: "s3cret", RedirectURIs: []string{callback}, Audience: "sluice"})
	return idp, consoleAddr, callback
}

// An administrator edits a credential's settings on its page: the change
// is stored, the secret stays as it was, a refused value comes back beside
// its field with what was typed, and a role-to-role credential's External
// ID is regenerated from its page. A user without the administrator
// policy sees no edit form, and a forged edit is refused by the service.
func TestConsoleEditsACredential(t *testing.T) {
	w := startWorkflows(t, func(c *serveConfig) { c.Credential.PlatformRoleARN = "arn:aws:iam::123456789012:role/sluice-platform" })
	ctx := context.Background()
	b := newBrowser(t, w.r.console)
	b.devLogin("ada@acme.test", auth.PolicyAdministrator)
	page := "/credentials/" + leafOf(w.cred) + "?env=production"
	before, err := w.creds.GetCredential(ctx, &credentialv1.GetCredentialRequest{Name: w.cred}, w.admin)
	if err != nil {
		t.Fatal(err)
	}
	_, body := b.get(page)
	if !strings.Contains(body, `action="/credentials/`+leafOf(w.cred)+`/edit`) {
		t.Fatalf("no edit form for an administrator: %.800s", body)
	}
	edit := url.Values{"etag": {before.GetEtag()}, "display_name": {"Exports " + xssLabel}, "description": {"for the nightly files"},
		"bucket": {before.GetBucket()}, "region": {"eu-west-1"}, "prefix": {"exports/"}}
	code, body := b.post("/credentials/"+leafOf(w.cred)+"/edit?env=production", edit, "")
	if code != http.StatusOK || strings.Contains(body, "<script>alert(2)") || !strings.Contains(body, "eu-west-1") {
		t.Fatalf("edit: %d %.800s", code, body)
	}
	after, err := w.creds.GetCredential(ctx, &credentialv1.GetCredentialRequest{Name: w.cred}, w.admin)
	if err != nil {
		t.Fatal(err)
	}
	if after.GetRegion() != "eu-west-1" || after.GetPrefix() != "exports/" || after.GetDescription() != "for the nightly files" ||
		!after.GetAccessKey().GetSecretSet() || !after.GetAccessKey().GetSecretUpdateTime().AsTime().Equal(before.GetAccessKey().GetSecretUpdateTime().AsTime()) {
		t.Errorf("after the edit: %v", after)
	}

	// A bucket name S3 refuses: the form comes back with it and its cause.
	edit.Set("etag", after.GetEtag())
	edit.Set("bucket", "Not_A_Bucket")
	code, body = b.post("/credentials/"+leafOf(w.cred)+"/edit?env=production", edit, "")
	if code != http.StatusBadRequest || !strings.Contains(body, `id="edit-bucket-error"`) || !strings.Contains(body, `value="Not_A_Bucket"`) {
		t.Errorf("refused edit: %d %.1500s", code, body)
	}
	// A stale etag: another edit came first.
	edit.Set("bucket", before.GetBucket())
	edit.Set("etag", before.GetEtag())
	if code, body := b.post("/credentials/"+leafOf(w.cred)+"/edit?env=production", edit, ""); code != http.StatusBadRequest {
		t.Errorf("stale edit: %d %.800s", code, body)
	}

	// A role-to-role credential: regenerate its External ID.
	role, err := w.creds.CreateCredential(ctx, &credentialv1.CreateCredentialRequest{Parent: production, CredentialId: "role",
		Credential: &credentialv1.Credential{Bucket: "exports", Type: &credentialv1.Credential_RoleToRole{RoleToRole: &credentialv1.RoleToRole{
			TargetRoleArn: "arn:aws:iam::123456789012:role/sluice-exports"}}}}, w.admin)
	if err != nil {
		t.Fatal(err)
	}
	code, body = b.post("/credentials/role/external-id?env=production", url.Values{"etag": {role.GetEtag()}}, "")
	if code != http.StatusOK {
		t.Fatalf("regenerate: %d %.800s", code, body)
	}
	again, err := w.creds.GetCredential(ctx, &credentialv1.GetCredentialRequest{Name: role.GetName()}, w.admin)
	if err != nil {
		t.Fatal(err)
	}
	if id := again.GetRoleToRole().GetExternalId(); id == role.GetRoleToRole().GetExternalId() || !strings.Contains(body, id) {
		t.Errorf("External ID %q after regenerating (was %q); the page shows it: %v", id, role.GetRoleToRole().GetExternalId(), strings.Contains(body, id))
	}

	// Without the administrator policy (the user sees the credential, for a
	// destination on it): no form, and a forged post is the service's
	// refusal.
	w.destination(t, "nightly", &destinationv1.Destination{Format: csvFormat()})
	u := newBrowser(t, w.r.console)
	u.devLogin("bo@acme.test")
	if code, body := u.get(page); code != http.StatusOK || strings.Contains(body, "/edit") || strings.Contains(body, "external-id") {
		t.Errorf("a user without the administrator policy is offered the edit: %d %.800s", code, body)
	}
	edit.Set("etag", "")
	edit.Set("region", "ap-south-1")
	if code, _ := u.post("/credentials/"+leafOf(w.cred)+"/edit?env=production", edit, ""); code != http.StatusForbidden {
		t.Errorf("a forged edit answered %d", code)
	}
	if c, _ := w.creds.GetCredential(ctx, &credentialv1.GetCredentialRequest{Name: w.cred}, w.admin); c.GetRegion() != "eu-west-1" {
		t.Errorf("a refused edit changed the region to %q", c.GetRegion())
	}
}
