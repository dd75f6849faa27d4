package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/types/known/fieldmaskpb"
	"google.golang.org/protobuf/types/known/timestamppb"
	"gopkg.in/yaml.v3"

	credentialv1 "github.com/sluicehq/sluice/gen/sluice/credential/v1"
	destinationv1 "github.com/sluicehq/sluice/gen/sluice/destination/v1"
)

// withService runs body with a client of service, made by newClient, in a
// context bounded by --timeout, and closes the connection after.
func withService[C any](c *clientConfig, cmd *cobra.Command, service string, newClient func(grpc.ClientConnInterface) C, body func(context.Context, C) error) error {
	return conn(c, service, func(cc *grpc.ClientConn) error {
		ctx, cancel := c.context(cmd)
		defer cancel()
		return body(ctx, newClient(cc))
	})
}

// clientCommand is a client command group: its subcommands share the
// client flags, loaded before they run.
func clientCommand(use, short string, c *clientConfig, subs ...*cobra.Command) *cobra.Command {
	cmd := &cobra.Command{Use: use, Short: short, Args: cobra.NoArgs}
	c.addClientFlags(cmd.PersistentFlags())
	cmd.AddCommand(subs...)
	return cmd
}

// run adapts a client command's body: config loaded, output chosen, and
// arguments counted as a usage error.
func run(c *clientConfig, args int, body func(cmd *cobra.Command, p printer, args []string) error) func(*cobra.Command, []string) error {
	return func(cmd *cobra.Command, a []string) error {
		if len(a) != args {
			return usageError("%s takes %d argument(s), got %d: %s", cmd.CommandPath(), args, len(a), cmd.UseLine())
		}
		if err := c.load(); err != nil {
			return err
		}
		return body(cmd, printer{w: cmd.OutOrStdout(), output: c.output}, a)
	}
}

func when(t *timestamppb.Timestamp) string {
	if t == nil {
		return "-"
	}
	return t.AsTime().Local().Format(time.DateTime)
}

func enum(s fmt.Stringer, prefix string) string { return strings.TrimPrefix(s.String(), prefix) }

// last answers a resource name's id.
func last(name string) string { return name[strings.LastIndex(name, "/")+1:] }

func credentialCommand() *cobra.Command {
	c := &clientConfig{}
	cols := []tableColumn[*credentialv1.Credential]{
		{"ID", func(x *credentialv1.Credential) string { return last(x.GetName()) }},
		{"TYPE", func(x *credentialv1.Credential) string {
			if x.GetRoleToRole() != nil {
				return "iam-role-to-role"
			}
			return "iam-credential"
		}},
		{"BUCKET", (*credentialv1.Credential).GetBucket},
		{"REGION", (*credentialv1.Credential).GetRegion},
		{"UPDATED", func(x *credentialv1.Credential) string { return when(x.GetUpdateTime()) }},
	}
	one := func(p printer, x *credentialv1.Credential) error {
		return printOne(p, x, func(w io.Writer) {
			fmt.Fprintf(w, "name\t%s\n", x.GetName())
			fmt.Fprintf(w, "bucket\t%s\nregion\t%s\n", x.GetBucket(), x.GetRegion())
			if r := x.GetRoleToRole(); r != nil {
				fmt.Fprintf(w, "type\tiam-role-to-role\ntarget role\t%s\nplatform role\t%s\nexternal id\t%s\n", r.GetTargetRoleArn(), r.GetPlatformRoleArn(), r.GetExternalId())
				fmt.Fprintf(w, "trust policy\t%s\n", compactJSON(r.GetTrustPolicyJson()))
			}
			if k := x.GetAccessKey(); k != nil {
				fmt.Fprintf(w, "type\tiam-credential\naccess key id\t%s\nsecret set\t%v (%s)\n", k.GetAccessKeyId(), k.GetSecretSet(), when(k.GetSecretUpdateTime()))
			}
			fmt.Fprintf(w, "etag\t%s\nupdated\t%s\n", x.GetEtag(), when(x.GetUpdateTime()))
		})
	}

	var (
		roleARN, bucket, region, keyID, description string
		secretFromEnv                               string
	)
	create := &cobra.Command{
		Use:   "create ID --bucket B (--target-role-arn ARN | --access-key-id K --secret-from-env VAR)",
		Short: "Create a credential: role to role (recommended), or an access key whose secret is read from an environment variable",
		RunE: run(c, 1, func(cmd *cobra.Command, p printer, args []string) error {
			parent, err := c.parent()
			if err != nil {
				return err
			}
			cred := &credentialv1.Credential{Bucket: bucket, Region: region, Description: description}
			switch {
			case roleARN != "" && keyID == "":
				cred.Type = &credentialv1.Credential_RoleToRole{RoleToRole: &credentialv1.RoleToRole{TargetRoleArn: roleARN}}
			case keyID != "" && roleARN == "":
				secret := os.Getenv(secretFromEnv)
				if secretFromEnv == "" || secret == "" {
					return usageError("an access key's secret is read from the variable --secret-from-env names (never a flag, which the shell's history keeps)")
				}
				cred.Type = &credentialv1.Credential_AccessKey{AccessKey: &credentialv1.AccessKey{AccessKeyId: keyID, SecretAccessKey: secret}}
			default:
				return usageError("give either --target-role-arn or --access-key-id")
			}
			return withService(c, cmd, "credential", credentialv1.NewCredentialServiceClient, func(ctx context.Context, cl credentialv1.CredentialServiceClient) error {
				out, err := cl.CreateCredential(ctx, &credentialv1.CreateCredentialRequest{Parent: parent, CredentialId: args[0], Credential: cred}, c.call()...)
				if err != nil {
					return err
				}
				return one(p, out)
			})
		}),
	}
	create.Flags().StringVar(&roleARN, "target-role-arn", "", "the customer's role Sluice assumes (iam-role-to-role)")
	create.Flags().StringVar(&keyID, "access-key-id", "", "the IAM access key id (iam-credential)")
	create.Flags().StringVar(&secretFromEnv, "secret-from-env", "", "the environment variable holding the IAM secret key")
	create.Flags().StringVar(&bucket, "bucket", "", "the S3 bucket name or access point ARN")
	create.Flags().StringVar(&region, "region", "", "the bucket's region")
	create.Flags().StringVar(&description, "description", "", "what the credential is for")

	get := &cobra.Command{Use: "get ID|NAME", Short: "Show a credential (secrets are never shown)", RunE: run(c, 1, func(cmd *cobra.Command, p printer, args []string) error {
		name, err := c.name("credentials", args[0])
		if err != nil {
			return err
		}
		return withService(c, cmd, "credential", credentialv1.NewCredentialServiceClient, func(ctx context.Context, cl credentialv1.CredentialServiceClient) error {
			out, err := cl.GetCredential(ctx, &credentialv1.GetCredentialRequest{Name: name}, c.call()...)
			if err != nil {
				return err
			}
			return one(p, out)
		})
	})}
	list := &cobra.Command{Use: "list", Short: "List the environment's credentials", RunE: run(c, 0, func(cmd *cobra.Command, p printer, _ []string) error {
		parent, err := c.parent()
		if err != nil {
			return err
		}
		return withService(c, cmd, "credential", credentialv1.NewCredentialServiceClient, func(ctx context.Context, cl credentialv1.CredentialServiceClient) error {
			var all []*credentialv1.Credential
			for token := ""; ; {
				page, err := cl.ListCredentials(ctx, &credentialv1.ListCredentialsRequest{Parent: parent, PageToken: token}, c.call()...)
				if err != nil {
					return err
				}
				all = append(all, page.GetCredentials()...)
				if token = page.GetNextPageToken(); token == "" {
					break
				}
			}
			return printList(p, all, cols)
		})
	})}
	test := &cobra.Command{Use: "test ID|NAME", Short: "Test a credential against its bucket", RunE: run(c, 1, func(cmd *cobra.Command, p printer, args []string) error {
		name, err := c.name("credentials", args[0])
		if err != nil {
			return err
		}
		return withService(c, cmd, "credential", credentialv1.NewCredentialServiceClient, func(ctx context.Context, cl credentialv1.CredentialServiceClient) error {
			res, err := cl.TestCredential(ctx, &credentialv1.TestCredentialRequest{Name: name}, c.call()...)
			if err != nil {
				return err
			}
			return printTest(p, res)
		})
	})}
	var rotateFromEnv string
	rotate := &cobra.Command{Use: "rotate ID|NAME --secret-from-env VAR", Short: "Replace an access key credential's secret key", RunE: run(c, 1, func(cmd *cobra.Command, p printer, args []string) error {
		name, err := c.name("credentials", args[0])
		if err != nil {
			return err
		}
		secret := os.Getenv(rotateFromEnv)
		if rotateFromEnv == "" || secret == "" {
			return usageError("the new secret is read from the variable --secret-from-env names")
		}
		return withService(c, cmd, "credential", credentialv1.NewCredentialServiceClient, func(ctx context.Context, cl credentialv1.CredentialServiceClient) error {
			out, err := cl.UpdateCredential(ctx, &credentialv1.UpdateCredentialRequest{
				Credential: &credentialv1.Credential{Name: name, Type: &credentialv1.Credential_AccessKey{AccessKey: &credentialv1.AccessKey{SecretAccessKey: secret}}},
				UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"access_key.secret_access_key"}},
			}, c.call()...)
			if err != nil {
				return err
			}
			return one(p, out)
		})
	})}
	rotate.Flags().StringVar(&rotateFromEnv, "secret-from-env", "", "the environment variable holding the new IAM secret key")
	regen := &cobra.Command{Use: "regenerate-external-id ID|NAME", Short: "Give a role-to-role credential a new External ID (update the trust policy after)", RunE: run(c, 1, func(cmd *cobra.Command, p printer, args []string) error {
		name, err := c.name("credentials", args[0])
		if err != nil {
			return err
		}
		return withService(c, cmd, "credential", credentialv1.NewCredentialServiceClient, func(ctx context.Context, cl credentialv1.CredentialServiceClient) error {
			out, err := cl.RegenerateExternalId(ctx, &credentialv1.RegenerateExternalIdRequest{Name: name}, c.call()...)
			if err != nil {
				return err
			}
			return one(p, out)
		})
	})}
	var force bool
	del := &cobra.Command{Use: "delete ID|NAME", Short: "Delete a credential (--force, for administrators, even with destinations on it)", RunE: run(c, 1, func(cmd *cobra.Command, p printer, args []string) error {
		name, err := c.name("credentials", args[0])
		if err != nil {
			return err
		}
		return withService(c, cmd, "credential", credentialv1.NewCredentialServiceClient, func(ctx context.Context, cl credentialv1.CredentialServiceClient) error {
			if _, err := cl.DeleteCredential(ctx, &credentialv1.DeleteCredentialRequest{Name: name, Force: force}, c.call()...); err != nil {
				return err
			}
			fmt.Fprintf(p.w, "deleted %s\n", name)
			return nil
		})
	})}
	del.Flags().BoolVar(&force, "force", false, "delete even when destinations use it (administrators)")
	return clientCommand("credential", "Create, show, test, rotate and delete S3 credentials", c, create, get, list, test, rotate, regen, del)
}

func compactJSON(s string) string {
	var v any
	if json.Unmarshal([]byte(s), &v) != nil {
		return s
	}
	b, _ := json.Marshal(v)
	return string(b)
}

// printTest prints a connection test's checks; a failed test is an
// InvalidArgument-like outcome for scripts (exit code 2).
func printTest(p printer, res *credentialv1.TestResult) error {
	err := printList(p, res.GetChecks(), []tableColumn[*credentialv1.TestCheck]{
		{"CHECK", (*credentialv1.TestCheck).GetCheck},
		{"OUTCOME", func(x *credentialv1.TestCheck) string { return enum(x.GetOutcome(), "TEST_OUTCOME_") }},
		{"REASON", (*credentialv1.TestCheck).GetReason},
		{"MESSAGE", (*credentialv1.TestCheck).GetMessage},
	})
	if err != nil {
		return err
	}
	if !res.GetOk() {
		return &exitError{code: exitInvalid, err: fmt.Errorf("the test failed")}
	}
	return nil
}

// settingsFile reads a destination's settings from a YAML or JSON file,
// in the API's field names (snake_case or lowerCamel).
func settingsFile(file string, d *destinationv1.Destination) error {
	b, err := os.ReadFile(file)
	if err != nil {
		return usageError("%v", err)
	}
	var v any
	if err := yaml.Unmarshal(b, &v); err != nil { // YAML is a superset of JSON
		return usageError("%s: %v", file, err)
	}
	j, err := json.Marshal(v)
	if err != nil {
		return usageError("%s: %v", file, err)
	}
	if err := protojson.Unmarshal(j, d); err != nil {
		return usageError("%s: %v", file, err)
	}
	return nil
}

// formatOf answers the destination format a flag names.
func formatOf(name string) (*destinationv1.FileFormat, error) {
	delimited := func(d string) *destinationv1.FileFormat {
		return &destinationv1.FileFormat{Kind: &destinationv1.FileFormat_Delimited{Delimited: &destinationv1.DelimitedFormat{Delimiter: d}}}
	}
	switch name {
	case "parquet":
		return &destinationv1.FileFormat{Kind: &destinationv1.FileFormat_Parquet{Parquet: &destinationv1.ParquetFormat{}}}, nil
	case "csv":
		return delimited(","), nil
	case "tsv":
		return delimited("\t"), nil
	case "psv":
		return delimited("|"), nil
	case "json":
		return &destinationv1.FileFormat{Kind: &destinationv1.FileFormat_Json{Json: &destinationv1.JsonFormat{}}}, nil
	case "ndjson":
		return &destinationv1.FileFormat{Kind: &destinationv1.FileFormat_Ndjson{Ndjson: &destinationv1.NdjsonFormat{}}}, nil
	}
	return nil, usageError("--format %q: want parquet, csv, tsv, psv, json or ndjson (a custom delimiter goes in a settings file)", name)
}
