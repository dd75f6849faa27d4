package console

import (
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"google.golang.org/grpc/codes"

	"google.golang.org/protobuf/types/known/fieldmaskpb"

	credentialv1 "github.com/sluicehq/sluice/gen/sluice/credential/v1"
	destinationv1 "github.com/sluicehq/sluice/gen/sluice/destination/v1"
	"github.com/sluicehq/sluice/pkg/apierror"
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
}

func (s *Server) destination(q *request) error {
	name := q.parent + "/destinations/" + q.r.PathValue("id")
	d, err := s.peers.Destinations.GetDestination(q.ctx(), &destinationv1.GetDestinationRequest{Name: name}, q.as())
	if err != nil {
		return err
	}
	p := destinationPage{D: d, Admin: q.se.caller.IsAdmin(), Sandbox: strings.HasSuffix(q.parent, "/sandbox")}
	if p.Preview, err = s.peers.Destinations.PreviewDestination(q.ctx(), &destinationv1.PreviewDestinationRequest{Target: &destinationv1.PreviewDestinationRequest_Name{Name: name}}, q.as()); err != nil {
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
	s.render(q.w, q.r, http.StatusOK, "destination-new", form{Values: url.Values{}, Options: resp.GetCredentials()}, q)
	return nil
}

// destinationOf reads the Destination settings dialog.
func destinationOf(q *request) *destinationv1.Destination {
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
	if n, err := strconv.ParseInt(f.Get("split_rows"), 10, 64); err == nil && n > 0 {
		d.Split = &destinationv1.Split{MaxRows: n}
	}
	return d
}

func (s *Server) createDestination(q *request) error {
	got, err := s.peers.Destinations.CreateDestination(q.ctx(), &destinationv1.CreateDestinationRequest{Parent: q.parent,
		DestinationId: q.r.PostFormValue("id"), Destination: destinationOf(q)}, q.as())
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
	d := destinationOf(q)
	res, err := s.peers.Destinations.PreviewDestination(q.ctx(), &destinationv1.PreviewDestinationRequest{Target: &destinationv1.PreviewDestinationRequest_Destination{Destination: d}}, q.as())
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
	d, err := s.peers.Destinations.GetDestination(q.ctx(), &destinationv1.GetDestinationRequest{Name: name}, q.as())
	if err != nil {
		return err
	}
	s.render(q.w, q.r, http.StatusOK, "destination", destinationPage{D: d, Test: res, Admin: q.se.caller.IsAdmin(), Sandbox: strings.HasSuffix(q.parent, "/sandbox")}, q)
	return nil
}

// editDestination saves the settings a fix needs: bucket, prefix,
// description and access.
func (s *Server) editDestination(q *request) error {
	name := q.parent + "/destinations/" + q.r.PathValue("id")
	f := q.r.PostForm
	d := &destinationv1.Destination{Name: name, BucketOverride: f.Get("bucket_override"), Prefix: f.Get("prefix"), Description: f.Get("description"),
		Access: &destinationv1.Access{AdminOnly: f.Get("admin_only") != "", AllowLimitedPii: f.Get("allow_limited_pii") != ""}}
	_, err := s.peers.Destinations.UpdateDestination(q.ctx(), &destinationv1.UpdateDestinationRequest{Destination: d, Etag: f.Get("etag"),
		UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"bucket_override", "prefix", "description", "access"}}}, q.as())
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
