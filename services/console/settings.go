package console

import (
	"maps"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"

	"google.golang.org/grpc/codes"

	"google.golang.org/protobuf/types/known/fieldmaskpb"

	credentialv1 "github.com/sluicehq/sluice/gen/sluice/credential/v1"
	destinationv1 "github.com/sluicehq/sluice/gen/sluice/destination/v1"
	"github.com/sluicehq/sluice/pkg/apierror"
	"github.com/sluicehq/sluice/pkg/outputspec"
)

// The Settings pages: Credentials and Destinations, as the brief walks
// them. Every form becomes one API call as the user; what the API refuses
// comes back as the page's error, field by field.

func (s *Server) credentials(q *request) error {
	resp, err := s.peers.Credentials.ListCredentials(q.ctx(), &credentialv1.ListCredentialsRequest{Parent: q.parent, PageSize: 100}, q.as())
	if err != nil {
		return err
	}
	s.render(q.w, q.r, http.StatusOK, "credentials", resp.GetCredentials(), q)
	return nil
}

// credentialPage is one credential, with the last test's checks.
type credentialPage struct {
	C     *credentialv1.Credential
	Test  *credentialv1.TestResult
	Admin bool
	// Edit is the settings form shown again after the API refused it.
	Edit *form
}

// field is one input of the edit form.
type field struct{ ID, Label, Value, Error string }

// Field answers the edit form's input id: what was typed when the API
// refused the form, with its complaint, or else the stored value.
func (p credentialPage) Field(id, label, stored string) field {
	if p.Edit == nil {
		return field{ID: id, Label: label, Value: stored}
	}
	f := field{ID: id, Label: label, Value: p.Edit.V(id), Error: p.Edit.Fields[id]}
	if id == "role_arn" && f.Error == "" {
		f.Error = p.Edit.Fields["target_role_arn"]
	}
	return f
}

func (s *Server) credential(q *request) error {
	c, err := s.peers.Credentials.GetCredential(q.ctx(), &credentialv1.GetCredentialRequest{Name: q.parent + "/credentials/" + q.r.PathValue("id")}, q.as())
	if err != nil {
		return err
	}
	s.render(q.w, q.r, http.StatusOK, "credential", credentialPage{C: c, Admin: q.se.caller.IsAdmin()}, q)
	return nil
}

// form is a form shown again after the API refused it: what was typed
// (never a secret), the refusal, and each field's own complaint.
type form struct {
	Type   string
	Values url.Values
	Error  string
	Fields map[string]string
	// Options are the choices a form offers (credentials, for a
	// destination).
	Options any
}

// V answers what was typed in field.
func (f form) V(field string) string { return f.Values.Get(field) }

// On answers whether a checkbox is ticked.
func (f form) On(field string) bool { return f.Values.Get(field) != "" }

// Is answers whether a select's choice is value.
func (f form) Is(field, value string) bool { return f.Values.Get(field) == value }

// Err answers the API's complaint about field.
func (f form) Err(field string) string { return f.Fields[field] }

// refused answers the form again with err, when err is the API refusing
// the input; otherwise nil, and the caller fails as for any error.
func refused(q *request, err error, options any) *form {
	e := apierror.FromStatus(err)
	if e == nil || (e.Code != codes.InvalidArgument && e.Code != codes.AlreadyExists && e.Code != codes.FailedPrecondition) {
		return nil
	}
	f := &form{Type: q.r.PostFormValue("type"), Values: url.Values{}, Error: e.Message, Fields: map[string]string{}, Options: options}
	for k, v := range q.r.PostForm {
		if !strings.Contains(k, "secret") {
			f.Values[k] = v
		}
	}
	for _, v := range e.Violations {
		field := v.Field[strings.LastIndex(v.Field, ".")+1:]
		f.Fields[field] = v.Description
	}
	if len(f.Fields) > 0 && e.Code == codes.InvalidArgument {
		f.Error = "Some fields need a change: see beside each."
	}
	return f
}

func (s *Server) newCredential(q *request) error {
	s.render(q.w, q.r, http.StatusOK, "credential-new", form{Type: q.r.URL.Query().Get("type"), Values: url.Values{"region": {"us-east-1"}}}, q)
	return nil
}

// createCredential saves the form; the secret goes to the service and is
// never shown again.
func (s *Server) createCredential(q *request) error {
	f := q.r.PostForm
	c := &credentialv1.Credential{DisplayName: f.Get("display_name"), Description: f.Get("description"), Bucket: f.Get("bucket"),
		Region: f.Get("region"), Prefix: f.Get("prefix")}
	if f.Get("type") == "iam-role-to-role" {
		c.Type = &credentialv1.Credential_RoleToRole{RoleToRole: &credentialv1.RoleToRole{TargetRoleArn: f.Get("role_arn")}}
	} else {
		c.Type = &credentialv1.Credential_AccessKey{AccessKey: &credentialv1.AccessKey{AccessKeyId: f.Get("access_key_id"), SecretAccessKey: f.Get("secret_access_key")}}
	}
	got, err := s.peers.Credentials.CreateCredential(q.ctx(), &credentialv1.CreateCredentialRequest{Parent: q.parent, CredentialId: f.Get("id"), Credential: c}, q.as())
	if again := refused(q, err, nil); again != nil {
		s.render(q.w, q.r, http.StatusBadRequest, "credential-new", *again, q)
		return nil
	}
	if err != nil {
		return err
	}
	http.Redirect(q.w, q.r, "/credentials/"+leaf(got.GetName())+"?env="+leaf(q.parent), http.StatusSeeOther)
	return nil
}

// testCredential is the brief's Continue: each check with its outcome.
func (s *Server) testCredential(q *request) error {
	name := q.parent + "/credentials/" + q.r.PathValue("id")
	res, err := s.peers.Credentials.TestCredential(q.ctx(), &credentialv1.TestCredentialRequest{Name: name}, q.as())
	if err != nil {
		return err
	}
	c, err := s.peers.Credentials.GetCredential(q.ctx(), &credentialv1.GetCredentialRequest{Name: name}, q.as())
	if err != nil {
		return err
	}
	s.render(q.w, q.r, http.StatusOK, "credential", credentialPage{C: c, Test: res, Admin: q.se.caller.IsAdmin()}, q)
	return nil
}

// editCredential changes the credential's settings: the fields of the
// form, all sent with one update mask so that the service checks them
// together. The secret has its own form (rotateSecret): an edit never
// touches it.
func (s *Server) editCredential(q *request) error {
	name := q.parent + "/credentials/" + q.r.PathValue("id")
	c, err := s.peers.Credentials.GetCredential(q.ctx(), &credentialv1.GetCredentialRequest{Name: name}, q.as())
	if err != nil {
		return err
	}
	f := q.r.PostForm
	up := &credentialv1.Credential{Name: name, DisplayName: f.Get("display_name"), Description: f.Get("description"), Bucket: f.Get("bucket"),
		Region: f.Get("region"), Prefix: f.Get("prefix")}
	paths := []string{"display_name", "description", "bucket", "region", "prefix"}
	switch {
	case c.GetRoleToRole() != nil:
		up.Type = &credentialv1.Credential_RoleToRole{RoleToRole: &credentialv1.RoleToRole{TargetRoleArn: f.Get("role_arn")}}
		paths = append(paths, "role_to_role.target_role_arn")
	case c.GetAccessKey() != nil:
		up.Type = &credentialv1.Credential_AccessKey{AccessKey: &credentialv1.AccessKey{RoleArn: f.Get("role_arn")}}
		paths = append(paths, "access_key.role_arn")
	}
	_, err = s.peers.Credentials.UpdateCredential(q.ctx(), &credentialv1.UpdateCredentialRequest{Credential: up,
		UpdateMask: &fieldmaskpb.FieldMask{Paths: paths}, Etag: f.Get("etag")}, q.as())
	if again := refused(q, err, nil); again != nil {
		s.render(q.w, q.r, http.StatusBadRequest, "credential", credentialPage{C: c, Admin: q.se.caller.IsAdmin(), Edit: again}, q)
		return nil
	}
	if err != nil {
		return err
	}
	http.Redirect(q.w, q.r, "/credentials/"+q.r.PathValue("id")+"?env="+leaf(q.parent), http.StatusSeeOther)
	return nil
}

// regenerateExternalID gives a role-to-role credential a new External
// ID; the page then shows the trust policy to paste again.
func (s *Server) regenerateExternalID(q *request) error {
	_, err := s.peers.Credentials.RegenerateExternalId(q.ctx(), &credentialv1.RegenerateExternalIdRequest{
		Name: q.parent + "/credentials/" + q.r.PathValue("id"), Etag: q.r.PostFormValue("etag")}, q.as())
	if err != nil {
		return err
	}
	http.Redirect(q.w, q.r, "/credentials/"+q.r.PathValue("id")+"?env="+leaf(q.parent), http.StatusSeeOther)
	return nil
}

// rotateSecret sets a new secret access key.
func (s *Server) rotateSecret(q *request) error {
	name := q.parent + "/credentials/" + q.r.PathValue("id")
	_, err := s.peers.Credentials.UpdateCredential(q.ctx(), &credentialv1.UpdateCredentialRequest{
		Credential: &credentialv1.Credential{Name: name, Type: &credentialv1.Credential_AccessKey{AccessKey: &credentialv1.AccessKey{
			AccessKeyId: q.r.PostFormValue("access_key_id"), SecretAccessKey: q.r.PostFormValue("secret_access_key")}}},
		UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"access_key.access_key_id", "access_key.secret_access_key"}}, Etag: q.r.PostFormValue("etag")}, q.as())
	if err != nil {
		return err
	}
	http.Redirect(q.w, q.r, "/credentials/"+q.r.PathValue("id")+"?env="+leaf(q.parent), http.StatusSeeOther)
	return nil
}

func (s *Server) deleteCredential(q *request) error {
	_, err := s.peers.Credentials.DeleteCredential(q.ctx(), &credentialv1.DeleteCredentialRequest{Name: q.parent + "/credentials/" + q.r.PathValue("id"),
		Etag: q.r.PostFormValue("etag")}, q.as())
	if err != nil {
		return err
	}
	http.Redirect(q.w, q.r, "/credentials?env="+leaf(q.parent), http.StatusSeeOther)
	return nil
}

func (s *Server) destinations(q *request) error {
	resp, err := s.peers.Destinations.ListDestinations(q.ctx(), &destinationv1.ListDestinationsRequest{Parent: q.parent, PageSize: 100}, q.as())
	if err != nil {
		return err
	}
	s.render(q.w, q.r, http.StatusOK, "destinations", resp.GetDestinations(), q)
	return nil
}

// destinationPage is one destination, with what the user asked of it.
type destinationPage struct {
	D       *destinationv1.Destination
	Test    *credentialv1.TestResult
	Preview *destinationv1.PreviewDestinationResponse
	Admin   bool
	Sandbox bool
	// Form is the Configure destination dialog: the stored settings, or
	// what was typed when the API refused them.
	Form form
}

// destinationView answers the page of destination name, with the
// settings form filled from what is stored unless edit (a refused form)
// is given.
func (s *Server) destinationView(q *request, name string, edit *form) (destinationPage, error) {
	d, err := s.peers.Destinations.GetDestination(q.ctx(), &destinationv1.GetDestinationRequest{Name: name}, q.as())
	if err != nil {
		return destinationPage{}, err
	}
	p := destinationPage{D: d, Admin: q.se.caller.IsAdmin(), Sandbox: strings.HasSuffix(q.parent, "/sandbox")}
	if p.Preview, err = s.peers.Destinations.PreviewDestination(q.ctx(), &destinationv1.PreviewDestinationRequest{Target: &destinationv1.PreviewDestinationRequest_Name{Name: name}}, q.as()); err != nil {
		return destinationPage{}, err
	}
	creds, err := s.peers.Credentials.ListCredentials(q.ctx(), &credentialv1.ListCredentialsRequest{Parent: q.parent, PageSize: 100}, q.as())
	if err != nil {
		return destinationPage{}, err
	}
	options := creds.GetCredentials()
	// A user may use a destination whose credential they do not list: it
	// stays the choice, by its id.
	if !slices.ContainsFunc(options, func(c *credentialv1.Credential) bool { return c.GetName() == d.GetCredential() }) {
		options = append([]*credentialv1.Credential{{Name: d.GetCredential()}}, options...)
	}
	if edit != nil {
		p.Form = *edit
	} else {
		p.Form = form{Values: valuesOf(d)}
	}
	p.Form.Options = options
	return p, nil
}

func (s *Server) destination(q *request) error {
	p, err := s.destinationView(q, q.parent+"/destinations/"+q.r.PathValue("id"), nil)
	if err != nil {
		return err
	}
	s.render(q.w, q.r, http.StatusOK, "destination", p, q)
	return nil
}

func (s *Server) newDestination(q *request) error {
	resp, err := s.peers.Credentials.ListCredentials(q.ctx(), &credentialv1.ListCredentialsRequest{Parent: q.parent, PageSize: 100}, q.as())
	if err != nil {
		return err
	}
	// The API's defaults: a header line, and Parquet files named .parquet.
	s.render(q.w, q.r, http.StatusOK, "destination-new", form{Values: url.Values{"header": {"1"}, "parquet_extension": {"1"}}, Options: resp.GetCredentials()}, q)
	return nil
}

// destinationOf reads the Destination settings dialog. What it cannot
// read is refused as the API refuses a field.
func destinationOf(q *request) (*destinationv1.Destination, error) {
	f := q.r.PostForm
	d := &destinationv1.Destination{DisplayName: f.Get("display_name"), Description: f.Get("description"), Prefix: f.Get("prefix"),
		BucketOverride: f.Get("bucket_override"), FilenameTemplate: f.Get("filename_template"),
		SuccessFile: f.Get("success_file") != "", Manifest: f.Get("manifest") != "",
		Access: &destinationv1.Access{AdminOnly: f.Get("admin_only") != "", AllowLimitedPii: f.Get("allow_limited_pii") != ""}}
	if c := f.Get("credential"); c != "" {
		d.Credential = q.parent + "/credentials/" + leaf(c)
	}
	header := f.Get("header") != ""
	delimited := func(sep string) *destinationv1.FileFormat {
		return &destinationv1.FileFormat{Kind: &destinationv1.FileFormat_Delimited{Delimited: &destinationv1.DelimitedFormat{Delimiter: sep, Header: &header,
			Escape: f.Get("escape"), NullValue: f.Get("null_value"),
			QuoteMode:  destinationv1.QuoteMode(enumValue(destinationv1.QuoteMode_value, "QUOTE_MODE_", f.Get("quote_mode"))),
			LineEnding: destinationv1.LineEnding(enumValue(destinationv1.LineEnding_value, "LINE_ENDING_", f.Get("line_ending")))}}}
	}
	switch f.Get("format") {
	case "csv", "":
		d.Format = delimited("")
	case "tsv":
		d.Format = delimited("\t")
	case "psv":
		d.Format = delimited("|")
	case "json":
		d.Format = &destinationv1.FileFormat{Kind: &destinationv1.FileFormat_Json{Json: &destinationv1.JsonFormat{}}}
	case "ndjson":
		d.Format = &destinationv1.FileFormat{Kind: &destinationv1.FileFormat_Ndjson{Ndjson: &destinationv1.NdjsonFormat{}}}
	case "parquet":
		p := &destinationv1.ParquetFormat{Codec: destinationv1.ParquetCodec(enumValue(destinationv1.ParquetCodec_value, "PARQUET_CODEC_", f.Get("parquet_codec")))}
		if n, err := strconv.ParseInt(f.Get("row_group_rows"), 10, 64); err == nil && n > 0 {
			p.RowGroupRows = n
		}
		ext := f.Get("parquet_extension") != ""
		p.Extension = &ext
		p.DataPageVersion = destinationv1.ParquetDataPageVersion(enumValue(destinationv1.ParquetDataPageVersion_value, "PARQUET_DATA_PAGE_VERSION_", f.Get("data_page_version")))
		p.Dictionary = destinationv1.ParquetDictionary(enumValue(destinationv1.ParquetDictionary_value, "PARQUET_DICTIONARY_", f.Get("dictionary")))
		d.Format = &destinationv1.FileFormat{Kind: &destinationv1.FileFormat_Parquet{Parquet: p}}
	default:
		d.Format = delimited("")
	}
	if f.Get("row_number") != "" {
		d.RowNumber = &destinationv1.RowNumber{Enabled: true, ColumnName: f.Get("row_number_column")}
	}
	if k := enumValue(destinationv1.EncryptionKind_value, "ENCRYPTION_KIND_", f.Get("encryption")); k != 0 {
		d.Encryption = &destinationv1.Encryption{Kind: destinationv1.EncryptionKind(k), KmsKeyId: f.Get("kms_key_id")}
	}
	d.PgpPublicKey = strings.TrimSpace(f.Get("pgp_public_key"))
	d.StorageClass = destinationv1.StorageClass(enumValue(destinationv1.StorageClass_value, "STORAGE_CLASS_", f.Get("storage_class")))
	d.CannedAcl = destinationv1.CannedAcl(enumValue(destinationv1.CannedAcl_value, "CANNED_ACL_", f.Get("canned_acl")))
	d.ExpectedBucketOwner = f.Get("expected_bucket_owner")
	if k := enumValue(destinationv1.CompressionKind_value, "COMPRESSION_KIND_", f.Get("compression")); k != 0 {
		d.Compression = &destinationv1.Compression{Kind: destinationv1.CompressionKind(k), UseZip64: f.Get("zip64") != ""}
	}
	rows, _ := strconv.ParseInt(f.Get("split_rows"), 10, 64)
	size, _ := strconv.ParseInt(f.Get("split_bytes"), 10, 64)
	if rows > 0 || size > 0 {
		d.Split = &destinationv1.Split{MaxRows: max(rows, 0), MaxBytes: max(size, 0)}
	}
	for line := range strings.Lines(f.Get("tags")) {
		k, v, _ := strings.Cut(strings.TrimSpace(line), "=")
		if k = strings.TrimSpace(k); k != "" {
			if d.Tags == nil {
				d.Tags = map[string]string{}
			}
			d.Tags[k] = strings.TrimSpace(v)
		}
	}
	if pb := strings.TrimSpace(f.Get("partition_by")); pb != "" {
		fields, err := outputspec.ParsePartitionBy(pb)
		if err != nil {
			var v apierror.Violations
			v.Add("destination.partition_by", "%v", err)
			return d, v.Err()
		}
		d.PartitionBy = &destinationv1.Partitioning{Fields: fields, TimeZone: strings.TrimSpace(f.Get("partition_time_zone")),
			KeepColumns: f.Get("partition_keep_columns") != ""}
	}
	return d, nil
}

// valuesOf answers a destination's settings as the settings form names
// them: the inverse of destinationOf.
func valuesOf(d *destinationv1.Destination) url.Values {
	v := url.Values{}
	set := func(k, val string) {
		if val != "" {
			v.Set(k, val)
		}
	}
	on := func(k string, b bool) {
		if b {
			v.Set(k, "1")
		}
	}
	choice := func(e interface{ String() string }, prefix string) string {
		s := strings.TrimPrefix(e.String(), prefix)
		if s == "UNSPECIFIED" {
			return ""
		}
		return strings.ToLower(s)
	}
	set("credential", leaf(d.GetCredential()))
	set("display_name", d.GetDisplayName())
	set("description", d.GetDescription())
	on("admin_only", d.GetAccess().GetAdminOnly())
	on("allow_limited_pii", d.GetAccess().GetAllowLimitedPii())
	set("bucket_override", d.GetBucketOverride())
	set("prefix", d.GetPrefix())
	f := d.GetFormat()
	switch {
	case f.GetParquet() != nil:
		p := f.GetParquet()
		v.Set("format", "parquet")
		set("parquet_codec", choice(p.GetCodec(), "PARQUET_CODEC_"))
		if p.GetRowGroupRows() > 0 {
			v.Set("row_group_rows", strconv.FormatInt(p.GetRowGroupRows(), 10))
		}
		set("data_page_version", choice(p.GetDataPageVersion(), "PARQUET_DATA_PAGE_VERSION_"))
		set("dictionary", choice(p.GetDictionary(), "PARQUET_DICTIONARY_"))
		on("parquet_extension", p.Extension == nil || p.GetExtension())
	case f.GetJson() != nil:
		v.Set("format", "json")
	case f.GetNdjson() != nil:
		v.Set("format", "ndjson")
	default:
		c := f.GetDelimited()
		switch c.GetDelimiter() {
		case "\t":
			v.Set("format", "tsv")
		case "|":
			v.Set("format", "psv")
		default:
			v.Set("format", "csv")
		}
		on("header", c.Header == nil || c.GetHeader())
		set("quote_mode", choice(c.GetQuoteMode(), "QUOTE_MODE_"))
		set("line_ending", choice(c.GetLineEnding(), "LINE_ENDING_"))
		set("escape", c.GetEscape())
		set("null_value", c.GetNullValue())
	}
	if f.GetParquet() == nil {
		v.Set("parquet_extension", "1")
	}
	if f.GetDelimited() == nil {
		v.Set("header", "1")
	}
	if r := d.GetRowNumber(); r.GetEnabled() {
		v.Set("row_number", "1")
		set("row_number_column", r.GetColumnName())
	}
	set("compression", choice(d.GetCompression().GetKind(), "COMPRESSION_KIND_"))
	on("zip64", d.GetCompression().GetUseZip64())
	if n := d.GetSplit().GetMaxRows(); n > 0 {
		v.Set("split_rows", strconv.FormatInt(n, 10))
	}
	if n := d.GetSplit().GetMaxBytes(); n > 0 {
		v.Set("split_bytes", strconv.FormatInt(n, 10))
	}
	set("filename_template", d.GetFilenameTemplate())
	set("encryption", choice(d.GetEncryption().GetKind(), "ENCRYPTION_KIND_"))
	set("kms_key_id", d.GetEncryption().GetKmsKeyId())
	set("pgp_public_key", d.GetPgpPublicKey())
	set("storage_class", choice(d.GetStorageClass(), "STORAGE_CLASS_"))
	set("canned_acl", choice(d.GetCannedAcl(), "CANNED_ACL_"))
	set("expected_bucket_owner", d.GetExpectedBucketOwner())
	keys := slices.Sorted(maps.Keys(d.GetTags()))
	var tags strings.Builder
	for _, k := range keys {
		tags.WriteString(k + "=" + d.GetTags()[k] + "\n")
	}
	set("tags", tags.String())
	on("success_file", d.GetSuccessFile())
	on("manifest", d.GetManifest())
	if pb := d.GetPartitionBy(); pb != nil {
		set("partition_by", outputspec.FormatPartitionBy(pb.GetFields()))
		set("partition_time_zone", pb.GetTimeZone())
		on("partition_keep_columns", pb.GetKeepColumns())
	}
	return v
}

func (s *Server) createDestination(q *request) error {
	d, err := destinationOf(q)
	var got *destinationv1.Destination
	if err == nil {
		got, err = s.peers.Destinations.CreateDestination(q.ctx(), &destinationv1.CreateDestinationRequest{Parent: q.parent,
			DestinationId: q.r.PostFormValue("id"), Destination: d}, q.as())
	}
	if err != nil {
		creds, lerr := s.peers.Credentials.ListCredentials(q.ctx(), &credentialv1.ListCredentialsRequest{Parent: q.parent, PageSize: 100}, q.as())
		if again := refused(q, err, creds.GetCredentials()); again != nil && lerr == nil {
			s.render(q.w, q.r, http.StatusBadRequest, "destination-new", *again, q)
			return nil
		}
		return err
	}
	http.Redirect(q.w, q.r, "/destinations/"+leaf(got.GetName())+"?env="+leaf(q.parent), http.StatusSeeOther)
	return nil
}

// previewDestination renders the keys the settings being typed make: the
// form's live Preview (htmx).
func (s *Server) previewDestination(q *request) error {
	d, err := destinationOf(q)
	var res *destinationv1.PreviewDestinationResponse
	if err == nil {
		res, err = s.peers.Destinations.PreviewDestination(q.ctx(), &destinationv1.PreviewDestinationRequest{Target: &destinationv1.PreviewDestinationRequest_Destination{Destination: d}}, q.as())
	}
	if err != nil {
		s.fragment(q.w, "destination-new", "preview", map[string]any{"Error": errMessage(err)})
		return nil
	}
	s.fragment(q.w, "destination-new", "preview", map[string]any{"P": res})
	return nil
}

// testDestination is the Test connection link.
func (s *Server) testDestination(q *request) error {
	name := q.parent + "/destinations/" + q.r.PathValue("id")
	res, err := s.peers.Destinations.TestDestination(q.ctx(), &destinationv1.TestDestinationRequest{Name: name}, q.as())
	if err != nil {
		return err
	}
	p, err := s.destinationView(q, name, nil)
	if err != nil {
		return err
	}
	p.Test = res
	s.render(q.w, q.r, http.StatusOK, "destination", p, q)
	return nil
}

// destinationSettings are the update_mask paths the settings form sets:
// all of them, so that the service checks the settings together.
var destinationSettings = []string{
	"display_name", "description", "credential", "bucket_override", "prefix", "format", "compression",
	"filename_template", "split", "row_number", "success_file", "manifest", "pgp_public_key",
	"encryption", "storage_class", "canned_acl", "tags", "expected_bucket_owner", "access", "partition_by",
}

// editDestination saves the Configure destination dialog: every setting.
func (s *Server) editDestination(q *request) error {
	name := q.parent + "/destinations/" + q.r.PathValue("id")
	d, err := destinationOf(q)
	if err == nil {
		d.Name = name
		_, err = s.peers.Destinations.UpdateDestination(q.ctx(), &destinationv1.UpdateDestinationRequest{Destination: d, Etag: q.r.PostFormValue("etag"),
			UpdateMask: &fieldmaskpb.FieldMask{Paths: destinationSettings}}, q.as())
	}
	if again := refused(q, err, nil); again != nil {
		p, verr := s.destinationView(q, name, again)
		if verr != nil {
			return err
		}
		s.render(q.w, q.r, http.StatusBadRequest, "destination", p, q)
		return nil
	}
	if err != nil {
		return err
	}
	http.Redirect(q.w, q.r, "/destinations/"+q.r.PathValue("id")+"?env="+leaf(q.parent), http.StatusSeeOther)
	return nil
}

// promoteDestination copies a sandbox destination to production.
func (s *Server) promoteDestination(q *request) error {
	got, err := s.peers.Destinations.PromoteDestination(q.ctx(), &destinationv1.PromoteDestinationRequest{Name: q.parent + "/destinations/" + q.r.PathValue("id"),
		TargetEnvironment: "production", Force: q.r.PostFormValue("force") != ""}, q.as())
	if err != nil {
		return err
	}
	http.Redirect(q.w, q.r, "/destinations/"+leaf(got.GetName())+"?env=production", http.StatusSeeOther)
	return nil
}

// errMessage says an API error in words, for a fragment.
func errMessage(err error) string {
	msg := err.Error()
	if i := strings.Index(msg, "desc = "); i >= 0 {
		msg = msg[i+len("desc = "):]
	}
	return msg
}

// enumValue answers the enum value a form's choice names (its name without
// prefix, any case); 0, the API's default, for none.
func enumValue(values map[string]int32, prefix, choice string) int32 {
	return values[prefix+strings.ToUpper(strings.ReplaceAll(choice, "-", "_"))]
}
