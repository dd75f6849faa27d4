package main

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/fieldmaskpb"
	"google.golang.org/protobuf/types/known/timestamppb"
	"gopkg.in/yaml.v3"

	deliveryv1 "github.com/sluicehq/sluice/gen/sluice/delivery/v1"
	destinationv1 "github.com/sluicehq/sluice/gen/sluice/destination/v1"
	"github.com/sluicehq/sluice/pkg/auth"
	"github.com/sluicehq/sluice/pkg/launch"
	"github.com/sluicehq/sluice/pkg/outputspec"
)

// conn dials one service for a command and closes it after.
func conn(c *clientConfig, service string, body func(cc *grpc.ClientConn) error) error {
	cc, err := c.dial(service)
	if err != nil {
		return err
	}
	defer cc.Close()
	return body(cc)
}

func destinationCommand() *cobra.Command {
	c := &clientConfig{}
	cols := []tableColumn[*destinationv1.Destination]{
		{"ID", func(x *destinationv1.Destination) string { return last(x.GetName()) }},
		{"FORMAT", formatName},
		{"CREDENTIAL", func(x *destinationv1.Destination) string { return last(x.GetCredential()) }},
		{"PREFIX", (*destinationv1.Destination).GetPrefix},
		{"LAST DELIVERY", func(x *destinationv1.Destination) string { return when(x.GetLastSuccessfulDeliveryTime()) }},
	}
	one := func(p printer, x *destinationv1.Destination) error {
		return printOne(p, x, func(w io.Writer) {
			fmt.Fprintf(w, "name\t%s\ncredential\t%s\nformat\t%s\n", x.GetName(), x.GetCredential(), formatName(x))
			fmt.Fprintf(w, "bucket override\t%s\nprefix\t%s\nfilename template\t%s\n", x.GetBucketOverride(), x.GetPrefix(), x.GetFilenameTemplate())
			fmt.Fprintf(w, "compression\t%s\nsuccess file\t%v\nmanifest\t%v\n", enum(x.GetCompression().GetKind(), "COMPRESSION_KIND_"), x.GetSuccessFile(), x.GetManifest())
			if pb := x.GetPartitionBy(); pb != nil {
				fmt.Fprintf(w, "partition by\t%s\npartition time zone\t%s\n", outputspec.FormatPartitionBy(pb.GetFields()), cmp.Or(pb.GetTimeZone(), "UTC"))
			}
			fmt.Fprintf(w, "admin only\t%v\nallow limited pii\t%v\n", x.GetAccess().GetAdminOnly(), x.GetAccess().GetAllowLimitedPii())
			fmt.Fprintf(w, "last delivery\t%s\netag\t%s\n", when(x.GetLastSuccessfulDeliveryTime()), x.GetEtag())
		})
	}
	var (
		file, credential, prefix, format, compression, template, bucketOverride string
		partitionBy, partitionZone                                              string
		successFile, manifest, keepColumns                                      bool
	)
	create := &cobra.Command{
		Use:   "create ID (--from-file FILE | --credential C --format F ...)",
		Short: "Create a destination from flags, or from a YAML or JSON file of its settings (the API's field names)",
		RunE: run(c, 1, func(cmd *cobra.Command, p printer, args []string) error {
			parent, err := c.parent()
			if err != nil {
				return err
			}
			d := &destinationv1.Destination{}
			if file != "" {
				if err := settingsFile(file, d); err != nil {
					return err
				}
			}
			fs := cmd.Flags()
			if fs.Changed("credential") || d.GetCredential() == "" {
				if d.Credential, err = c.name("credentials", credential); err != nil {
					return err
				}
			}
			if fs.Changed("format") || d.GetFormat() == nil {
				if d.Format, err = formatOf(format); err != nil {
					return err
				}
			}
			if fs.Changed("compression") || d.GetCompression() == nil {
				kind, ok := destinationv1.CompressionKind_value["COMPRESSION_KIND_"+strings.ToUpper(compression)]
				if !ok {
					return usageError("--compression %q: want none, gzip, zip, tar or tgz", compression)
				}
				d.Compression = &destinationv1.Compression{Kind: destinationv1.CompressionKind(kind)}
			}
			for flag, dst := range map[string]*string{"prefix": &d.Prefix, "filename-template": &d.FilenameTemplate, "bucket-override": &d.BucketOverride} {
				if fs.Changed(flag) {
					*dst, _ = fs.GetString(flag)
				}
			}
			if fs.Changed("success-file") {
				d.SuccessFile = successFile
			}
			if fs.Changed("manifest") {
				d.Manifest = manifest
			}
			if fs.Changed("partition-by") || fs.Changed("partition-time-zone") || fs.Changed("partition-keep-columns") {
				if d.PartitionBy == nil {
					d.PartitionBy = &destinationv1.Partitioning{}
				}
				if fs.Changed("partition-by") {
					if d.PartitionBy.Fields, err = outputspec.ParsePartitionBy(partitionBy); err != nil {
						return usageError("--partition-by %v", err)
					}
				}
				if fs.Changed("partition-time-zone") {
					d.PartitionBy.TimeZone = partitionZone
				}
				if fs.Changed("partition-keep-columns") {
					d.PartitionBy.KeepColumns = keepColumns
				}
			}
			return withService(c, cmd, "destination", destinationv1.NewDestinationServiceClient, func(ctx context.Context, cl destinationv1.DestinationServiceClient) error {
				out, err := cl.CreateDestination(ctx, &destinationv1.CreateDestinationRequest{Parent: parent, DestinationId: args[0], Destination: d}, c.call()...)
				if err != nil {
					return err
				}
				return one(p, out)
			})
		}),
	}
	f := create.Flags()
	f.StringVar(&file, "from-file", "", "YAML or JSON file of the destination's settings; flags given override it")
	f.StringVar(&credential, "credential", "", "the credential (id or name) it writes with")
	f.StringVar(&format, "format", "parquet", "file format: parquet, csv, tsv, psv, json or ndjson")
	f.StringVar(&compression, "compression", "none", "none, gzip, zip, tar or tgz")
	f.StringVar(&prefix, "prefix", "", "S3 prefix the files land under")
	f.StringVar(&template, "filename-template", "", "file names, e.g. C360_{{now|format:'yyyy-MM-dd'}}.csv.gz")
	f.StringVar(&bucketOverride, "bucket-override", "", "a bucket other than the credential's")
	f.BoolVar(&successFile, "success-file", false, "write a .DONE object after the data")
	f.BoolVar(&manifest, "manifest", false, "write a manifest of the files with rows, bytes and checksums")
	f.StringVar(&partitionBy, "partition-by", "", "Hive-style folders by columns: country, signup_date:day (year, month, day, hour), customer_id:bucket:16")
	f.StringVar(&partitionZone, "partition-time-zone", "", "IANA time zone of the year/month/day/hour folders (default UTC)")
	f.BoolVar(&keepColumns, "partition-keep-columns", false, "also write the partition columns inside the files")

	get := &cobra.Command{Use: "get ID|NAME", Short: "Show a destination", RunE: run(c, 1, func(cmd *cobra.Command, p printer, args []string) error {
		name, err := c.name("destinations", args[0])
		if err != nil {
			return err
		}
		return withService(c, cmd, "destination", destinationv1.NewDestinationServiceClient, func(ctx context.Context, cl destinationv1.DestinationServiceClient) error {
			out, err := cl.GetDestination(ctx, &destinationv1.GetDestinationRequest{Name: name}, c.call()...)
			if err != nil {
				return err
			}
			return one(p, out)
		})
	})}
	list := &cobra.Command{Use: "list", Short: "List the environment's destinations", RunE: run(c, 0, func(cmd *cobra.Command, p printer, _ []string) error {
		parent, err := c.parent()
		if err != nil {
			return err
		}
		return withService(c, cmd, "destination", destinationv1.NewDestinationServiceClient, func(ctx context.Context, cl destinationv1.DestinationServiceClient) error {
			var all []*destinationv1.Destination
			for token := ""; ; {
				page, err := cl.ListDestinations(ctx, &destinationv1.ListDestinationsRequest{Parent: parent, PageToken: token}, c.call()...)
				if err != nil {
					return err
				}
				all = append(all, page.GetDestinations()...)
				if token = page.GetNextPageToken(); token == "" {
					break
				}
			}
			return printList(p, all, cols)
		})
	})}
	test := &cobra.Command{Use: "test ID|NAME", Short: "Test the connection: reach the bucket, write under the prefix, clean up", RunE: run(c, 1, func(cmd *cobra.Command, p printer, args []string) error {
		name, err := c.name("destinations", args[0])
		if err != nil {
			return err
		}
		return withService(c, cmd, "destination", destinationv1.NewDestinationServiceClient, func(ctx context.Context, cl destinationv1.DestinationServiceClient) error {
			res, err := cl.TestDestination(ctx, &destinationv1.TestDestinationRequest{Name: name}, c.call()...)
			if err != nil {
				return err
			}
			return printTest(p, res)
		})
	})}
	var at, outputName string
	var files int32
	preview := &cobra.Command{Use: "preview ID|NAME", Short: "The object keys a delivery would write", RunE: run(c, 1, func(cmd *cobra.Command, p printer, args []string) error {
		name, err := c.name("destinations", args[0])
		if err != nil {
			return err
		}
		t := time.Now()
		if at != "" {
			if t, err = time.Parse(time.RFC3339, at); err != nil {
				return usageError("--time %q: want RFC 3339, e.g. 2026-12-01T09:00:00Z", at)
			}
		}
		return withService(c, cmd, "destination", destinationv1.NewDestinationServiceClient, func(ctx context.Context, cl destinationv1.DestinationServiceClient) error {
			res, err := cl.PreviewDestination(ctx, &destinationv1.PreviewDestinationRequest{
				Target: &destinationv1.PreviewDestinationRequest_Name{Name: name}, Time: timestamppb.New(t), OutputName: outputName, FileCount: files}, c.call()...)
			if err != nil {
				return err
			}
			if p.output != "table" {
				return printOne(p, res, nil)
			}
			return printList(p, res.GetObjects(), []tableColumn[*destinationv1.PreviewObject]{
				{"KEY", func(x *destinationv1.PreviewObject) string { return "s3://" + res.GetBucket() + "/" + x.GetKey() }},
				{"KIND", func(x *destinationv1.PreviewObject) string { return enum(x.GetKind(), "OBJECT_KIND_") }},
			})
		})
	})}
	preview.Flags().StringVar(&at, "time", "", "when the delivery would run (RFC 3339; default now)")
	preview.Flags().StringVar(&outputName, "output-name", "", "the delivery's output name")
	preview.Flags().Int32Var(&files, "files", 0, "how many files of a split output to show")
	var target string
	var force bool
	promote := &cobra.Command{Use: "promote ID|NAME --to ENVIRONMENT", Short: "Promote a sandbox destination to another environment (production)", RunE: run(c, 1, func(cmd *cobra.Command, p printer, args []string) error {
		name, err := c.name("destinations", args[0])
		if err != nil {
			return err
		}
		return withService(c, cmd, "destination", destinationv1.NewDestinationServiceClient, func(ctx context.Context, cl destinationv1.DestinationServiceClient) error {
			out, err := cl.PromoteDestination(ctx, &destinationv1.PromoteDestinationRequest{Name: name, TargetEnvironment: target, Force: force}, c.call()...)
			if err != nil {
				return err
			}
			return one(p, out)
		})
	})}
	promote.Flags().StringVar(&target, "to", "production", "the environment to promote to")
	promote.Flags().BoolVar(&force, "force", false, "promote without a successful delivery first (administrators)")
	var upBucket, upPrefix, upTemplate, upFile string
	update := &cobra.Command{Use: "update ID|NAME [--bucket-override B] [--prefix P] [--filename-template T] [--from-file F]",
		Short: "Change a destination's settings: the flags given, or every setting a file names",
		RunE: run(c, 1, func(cmd *cobra.Command, p printer, args []string) error {
			name, err := c.name("destinations", args[0])
			if err != nil {
				return err
			}
			d := &destinationv1.Destination{Name: name}
			var paths []string
			if upFile != "" {
				if err := settingsFile(upFile, d); err != nil {
					return err
				}
				d.Name = name
				raw, _ := os.ReadFile(upFile)
				var top map[string]any
				if err := yaml.Unmarshal(raw, &top); err != nil {
					return usageError("%s: %v", upFile, err)
				}
				for k := range top {
					paths = append(paths, snake(k))
				}
			}
			fs := cmd.Flags()
			for flag, field := range map[string]struct {
				dst  *string
				path string
			}{"bucket-override": {&d.BucketOverride, "bucket_override"}, "prefix": {&d.Prefix, "prefix"}, "filename-template": {&d.FilenameTemplate, "filename_template"}} {
				if fs.Changed(flag) {
					*field.dst, _ = fs.GetString(flag)
					paths = append(paths, field.path)
				}
			}
			if len(paths) == 0 {
				return usageError("nothing to change: give a setting's flag or --from-file")
			}
			return withService(c, cmd, "destination", destinationv1.NewDestinationServiceClient, func(ctx context.Context, cl destinationv1.DestinationServiceClient) error {
				out, err := cl.UpdateDestination(ctx, &destinationv1.UpdateDestinationRequest{Destination: d, UpdateMask: &fieldmaskpb.FieldMask{Paths: paths}}, c.call()...)
				if err != nil {
					return err
				}
				return one(p, out)
			})
		})}
	update.Flags().StringVar(&upBucket, "bucket-override", "", "a bucket other than the credential's (empty: the credential's)")
	update.Flags().StringVar(&upPrefix, "prefix", "", "S3 prefix the files land under")
	update.Flags().StringVar(&upTemplate, "filename-template", "", "file names")
	update.Flags().StringVar(&upFile, "from-file", "", "YAML or JSON file of the settings to change (its top-level fields are the update mask)")
	del := &cobra.Command{Use: "delete ID|NAME", Short: "Delete a destination", RunE: run(c, 1, func(cmd *cobra.Command, p printer, args []string) error {
		name, err := c.name("destinations", args[0])
		if err != nil {
			return err
		}
		return withService(c, cmd, "destination", destinationv1.NewDestinationServiceClient, func(ctx context.Context, cl destinationv1.DestinationServiceClient) error {
			if _, err := cl.DeleteDestination(ctx, &destinationv1.DeleteDestinationRequest{Name: name}, c.call()...); err != nil {
				return err
			}
			fmt.Fprintf(p.w, "deleted %s\n", name)
			return nil
		})
	})}
	return clientCommand("destination", "Create, show, change, test, preview, promote and delete destinations", c, create, get, list, update, test, preview, promote, del)
}

// formatName names a destination's format as its flag does.
func formatName(x *destinationv1.Destination) string {
	if f := outputspec.FormatName(x); f != "" {
		return f
	}
	return "-"
}

var deliveryColumns = []tableColumn[*deliveryv1.Delivery]{
	{"ID", func(x *deliveryv1.Delivery) string { return last(x.GetName()) }},
	{"STATE", func(x *deliveryv1.Delivery) string { return enum(x.GetState(), "DELIVERY_STATE_") }},
	{"DESTINATION", func(x *deliveryv1.Delivery) string { return last(x.GetDestination()) }},
	{"ROWS", func(x *deliveryv1.Delivery) string { return fmt.Sprint(x.GetProgress().GetRows()) }},
	{"BYTES OUT", func(x *deliveryv1.Delivery) string { return fmt.Sprint(x.GetProgress().GetBytesOut()) }},
	{"STARTED", func(x *deliveryv1.Delivery) string { return when(x.GetCreateTime()) }},
	{"ERROR", func(x *deliveryv1.Delivery) string { return x.GetError().GetReason() }},
}

// printDelivery shows a delivery with what landed.
func printDelivery(p printer, d *deliveryv1.Delivery) error {
	return printOne(p, d, func(w io.Writer) {
		fmt.Fprintf(w, "name\t%s\nstate\t%s\ndestination\t%s\n", d.GetName(), enum(d.GetState(), "DELIVERY_STATE_"), d.GetDestination())
		fmt.Fprintf(w, "progress\t%d rows, %d bytes in, %d bytes out, %d parts\n", d.GetProgress().GetRows(), d.GetProgress().GetBytesIn(), d.GetProgress().GetBytesOut(), d.GetProgress().GetParts())
		if e := d.GetError(); e != nil {
			fmt.Fprintf(w, "error\t%s: %s\nworkflow\t%s\n", e.GetReason(), e.GetMessage(), d.GetWorkflow())
		}
		for _, o := range d.GetObjects() {
			fmt.Fprintf(w, "object\ts3://%s/%s\t%s\t%d rows\t%d bytes\t%d part(s)\tcrc32c %s\t%s\n", d.GetBucket(), o.GetKey(), o.GetKind(), o.GetRows(), o.GetBytes(), o.GetParts(), o.GetCrc32C(), o.GetChecksum())
		}
		fmt.Fprintf(w, "started\t%s\nended\t%s\ntrace\t%s\n", when(d.GetCreateTime()), when(d.GetEndTime()), d.GetTraceParent())
	})
}

func deliveryCommand() *cobra.Command {
	c := &clientConfig{}
	get := func(cmd *cobra.Command, name string) (*deliveryv1.Delivery, error) {
		var d *deliveryv1.Delivery
		err := withService(c, cmd, "delivery", deliveryv1.NewDeliveryServiceClient, func(ctx context.Context, cl deliveryv1.DeliveryServiceClient) error {
			var err error
			d, err = cl.GetDelivery(ctx, &deliveryv1.GetDeliveryRequest{Name: name}, c.call()...)
			return err
		})
		return d, err
	}
	show := &cobra.Command{Use: "get ID|NAME", Short: "Show a delivery and what landed", RunE: run(c, 1, func(cmd *cobra.Command, p printer, args []string) error {
		name, err := c.name("deliveries", args[0])
		if err != nil {
			return err
		}
		d, err := get(cmd, name)
		if err != nil {
			return err
		}
		return printDelivery(p, d)
	})}
	var filter string
	list := &cobra.Command{Use: "list", Short: "List deliveries, newest first", RunE: run(c, 0, func(cmd *cobra.Command, p printer, _ []string) error {
		parent, err := c.parent()
		if err != nil {
			return err
		}
		return withService(c, cmd, "delivery", deliveryv1.NewDeliveryServiceClient, func(ctx context.Context, cl deliveryv1.DeliveryServiceClient) error {
			page, err := cl.ListDeliveries(ctx, &deliveryv1.ListDeliveriesRequest{Parent: parent, Filter: filter, PageSize: 100}, c.call()...)
			if err != nil {
				return err
			}
			return printList(p, page.GetDeliveries(), deliveryColumns)
		})
	})}
	list.Flags().StringVar(&filter, "filter", "", `e.g. 'state = FAILED' or 'destination = "tenants/.../destinations/d"'`)
	watch := &cobra.Command{Use: "watch ID|NAME", Short: "Follow a delivery's progress until it ends", RunE: run(c, 1, func(cmd *cobra.Command, p printer, args []string) error {
		name, err := c.name("deliveries", args[0])
		if err != nil {
			return err
		}
		var final *deliveryv1.Delivery
		err = withService(c, cmd, "delivery", deliveryv1.NewDeliveryServiceClient, func(ctx context.Context, cl deliveryv1.DeliveryServiceClient) error {
			stream, err := cl.WatchDelivery(ctx, &deliveryv1.WatchDeliveryRequest{Name: name}, c.call()...)
			if err != nil {
				return err
			}
			for {
				d, err := stream.Recv()
				if errors.Is(err, io.EOF) {
					return nil
				}
				if err != nil {
					return err
				}
				final = d
				pr := d.GetProgress()
				fmt.Fprintf(cmd.ErrOrStderr(), "%s  %s  %d rows  %d bytes in  %d bytes out  %d parts\n", time.Now().Format(time.TimeOnly),
					enum(d.GetState(), "DELIVERY_STATE_"), pr.GetRows(), pr.GetBytesIn(), pr.GetBytesOut(), pr.GetParts())
			}
		})
		if err != nil || final == nil {
			return err
		}
		if err := printDelivery(p, final); err != nil {
			return err
		}
		switch final.GetState() {
		case deliveryv1.DeliveryState_DELIVERY_STATE_FAILED:
			return &exitError{code: exitDeliveryFailed, err: fmt.Errorf("the delivery failed with %s: sluice workflow show %s", final.GetError().GetReason(), last(final.GetName()))}
		case deliveryv1.DeliveryState_DELIVERY_STATE_CANCELLED:
			return &exitError{code: exitDeliveryFailed, err: fmt.Errorf("the delivery was cancelled")}
		}
		return nil
	})}
	// The service streams each change now; --every stays for scripts that
	// pass it.
	watch.Flags().Duration("every", time.Second, "ignored: the service sends each change as it happens")
	_ = watch.Flags().MarkHidden("every")
	var keepInput bool
	cancel := &cobra.Command{Use: "cancel ID|NAME", Short: "Cancel a running delivery, or discard a failed one", RunE: run(c, 1, func(cmd *cobra.Command, p printer, args []string) error {
		name, err := c.name("deliveries", args[0])
		if err != nil {
			return err
		}
		return withService(c, cmd, "delivery", deliveryv1.NewDeliveryServiceClient, func(ctx context.Context, cl deliveryv1.DeliveryServiceClient) error {
			d, err := cl.CancelDelivery(ctx, &deliveryv1.CancelDeliveryRequest{Name: name, KeepInput: keepInput}, c.call()...)
			if err != nil {
				return err
			}
			return printDelivery(p, d)
		})
	})}
	cancel.Flags().BoolVar(&keepInput, "keep-input", false, "keep a running delivery's whole input for the retention period, to restart it later with its workflow")
	return clientCommand("delivery", "Show, list, watch and cancel deliveries", c, show, list, watch, cancel)
}

func workflowCommand() *cobra.Command {
	c := &clientConfig{}
	var filter string
	list := &cobra.Command{Use: "list", Short: "List workflows (--filter 'state = FAILED' for those waiting on a resolution)", RunE: run(c, 0, func(cmd *cobra.Command, p printer, _ []string) error {
		parent, err := c.parent()
		if err != nil {
			return err
		}
		return withService(c, cmd, "delivery", deliveryv1.NewWorkflowServiceClient, func(ctx context.Context, cl deliveryv1.WorkflowServiceClient) error {
			page, err := cl.ListWorkflows(ctx, &deliveryv1.ListWorkflowsRequest{Parent: parent, Filter: filter, PageSize: 100}, c.call()...)
			if err != nil {
				return err
			}
			return printList(p, page.GetWorkflows(), []tableColumn[*deliveryv1.Workflow]{
				{"DELIVERY", func(x *deliveryv1.Workflow) string { return last(x.GetDelivery()) }},
				{"STATE", func(x *deliveryv1.Workflow) string { return enum(x.GetState(), "WORKFLOW_STATE_") }},
				{"FAILED STEP", func(x *deliveryv1.Workflow) string {
					for _, st := range x.GetSteps() {
						if st.GetState() == deliveryv1.StepState_STEP_STATE_FAILED {
							return st.GetStep() + " " + st.GetError().GetReason()
						}
					}
					return "-"
				}},
				{"RESOLUTIONS", func(x *deliveryv1.Workflow) string {
					var ids []string
					for _, a := range x.GetActions() {
						ids = append(ids, a.GetId())
					}
					return strings.Join(ids, ",")
				}},
			})
		})
	})}
	list.Flags().StringVar(&filter, "filter", "", "e.g. 'state = FAILED'")
	workflowName := func(arg string) (string, error) {
		name, err := c.name("deliveries", strings.TrimSuffix(arg, "/workflow"))
		return name + "/workflow", err
	}
	show := &cobra.Command{Use: "show DELIVERY", Short: "Show a delivery's workflow: its steps, and how to resolve a failure", RunE: run(c, 1, func(cmd *cobra.Command, p printer, args []string) error {
		name, err := workflowName(args[0])
		if err != nil {
			return err
		}
		return withService(c, cmd, "delivery", deliveryv1.NewWorkflowServiceClient, func(ctx context.Context, cl deliveryv1.WorkflowServiceClient) error {
			w, err := cl.GetWorkflow(ctx, &deliveryv1.GetWorkflowRequest{Name: name}, c.call()...)
			if err != nil {
				return err
			}
			return printOne(p, w, func(out io.Writer) {
				fmt.Fprintf(out, "workflow\t%s\nstate\t%s\trun %d\n", w.GetName(), enum(w.GetState(), "WORKFLOW_STATE_"), w.GetCurrentRun().GetRun())
				for _, st := range w.GetSteps() {
					fmt.Fprintf(out, "step %s\t%s\t%d attempt(s)", st.GetStep(), enum(st.GetState(), "STEP_STATE_"), st.GetAttempts())
					if e := st.GetError(); e != nil {
						fmt.Fprintf(out, "\t%s: %s", e.GetReason(), e.GetMessage())
					}
					fmt.Fprintln(out)
				}
				for _, a := range w.GetActions() {
					fmt.Fprintf(out, "resolution [%s]\t%s\n", a.GetId(), a.GetTitle())
					for i, step := range a.GetInstructions() {
						fmt.Fprintf(out, "\t%d. %s\n", i+1, step)
					}
					if a.GetMissingPermission() != "" {
						fmt.Fprintf(out, "\tmissing permission: %s\n", a.GetMissingPermission())
					}
					if a.GetPolicyJson() != "" {
						fmt.Fprintf(out, "\tpolicy: %s\n", compactJSON(a.GetPolicyJson()))
					}
				}
			})
		})
	})}
	resolve := &cobra.Command{Use: "resolve DELIVERY ACTION", Short: "Run a resolution: the delivery runs again from the data Sluice kept", RunE: run(c, 2, func(cmd *cobra.Command, p printer, args []string) error {
		name, err := workflowName(args[0])
		if err != nil {
			return err
		}
		return conn(c, "delivery", func(cc *grpc.ClientConn) error {
			// A rerun lasts as long as the delivery: no --timeout.
			d, err := deliveryv1.NewWorkflowServiceClient(cc).ResolveWorkflow(cmd.Context(), &deliveryv1.ResolveWorkflowRequest{Name: name, ActionId: args[1]}, c.call()...)
			if err != nil {
				return err
			}
			return printDelivery(p, d)
		})
	})}
	return clientCommand("workflow", "List and show workflows, and resolve failed deliveries", c, list, show, resolve)
}

func notificationCommand() *cobra.Command {
	c := &clientConfig{}
	var all bool
	list := &cobra.Command{Use: "list", Short: "List notifications not acknowledged yet (--all for every one)", RunE: run(c, 0, func(cmd *cobra.Command, p printer, _ []string) error {
		parent, err := c.parent()
		if err != nil {
			return err
		}
		filter := "acknowledged = false"
		if all {
			filter = ""
		}
		return withService(c, cmd, "delivery", deliveryv1.NewWorkflowServiceClient, func(ctx context.Context, cl deliveryv1.WorkflowServiceClient) error {
			page, err := cl.ListNotifications(ctx, &deliveryv1.ListNotificationsRequest{Parent: parent, Filter: filter, PageSize: 100}, c.call()...)
			if err != nil {
				return err
			}
			return printList(p, page.GetNotifications(), []tableColumn[*deliveryv1.Notification]{
				{"ID", func(x *deliveryv1.Notification) string { return last(x.GetName()) }},
				{"SEVERITY", func(x *deliveryv1.Notification) string { return enum(x.GetSeverity(), "SEVERITY_") }},
				{"TITLE", (*deliveryv1.Notification).GetTitle},
				{"ABOUT", func(x *deliveryv1.Notification) string {
					for _, about := range []string{strings.TrimSuffix(x.GetWorkflow(), "/workflow"), x.GetSubscription(), x.GetCredential(), x.GetDestination()} {
						if about != "" {
							return last(about)
						}
					}
					return "-"
				}},
				{"RAISED", func(x *deliveryv1.Notification) string { return when(x.GetCreateTime()) }},
			})
		})
	})}
	list.Flags().BoolVar(&all, "all", false, "acknowledged ones too")
	ack := &cobra.Command{Use: "ack ID|NAME", Short: "Acknowledge a notification", RunE: run(c, 1, func(cmd *cobra.Command, p printer, args []string) error {
		name, err := c.name("notifications", args[0])
		if err != nil {
			return err
		}
		return withService(c, cmd, "delivery", deliveryv1.NewWorkflowServiceClient, func(ctx context.Context, cl deliveryv1.WorkflowServiceClient) error {
			n, err := cl.AcknowledgeNotification(ctx, &deliveryv1.AcknowledgeNotificationRequest{Name: name}, c.call()...)
			if err != nil {
				return err
			}
			return printOne(p, n, func(w io.Writer) { fmt.Fprintf(w, "acknowledged\t%s\n", n.GetName()) })
		})
	})}
	return clientCommand("notification", "List and acknowledge the notifications of failed deliveries", c, list, ack)
}

// loginCommand mints a development token from the local user key and
// keeps it in the config file, for a local `sluice serve`.
func loginCommand() *cobra.Command {
	var (
		dataDir, tenant, subject, environment, addr, file string
		policies                                          []string
		ttl                                               time.Duration
	)
	cmd := &cobra.Command{
		Use:   "login --data-dir DIR --tenant T --subject S",
		Short: "Sign in to a local sluice serve: mint a token with its development key and keep it in the config file",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			key, err := auth.LoadOrCreateSigningKey(launch.DevUserKeyPath(dataDir))
			if err != nil {
				return err
			}
			tok, err := auth.NewSigner(key).Mint(subject, tenant, policies, ttl)
			if err != nil {
				return err
			}
			b, err := yaml.Marshal(&clientConfig{Addr: addr, Token: tok, Environment: environment})
			if err != nil {
				return err
			}
			if err := os.MkdirAll(filepath.Dir(file), 0o700); err != nil {
				return err
			}
			if err := os.WriteFile(file, b, 0o600); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "signed in as %s of %s until %s; config in %s\n", subject, tenant, time.Now().Add(ttl).Format(time.DateTime), file)
			return nil
		},
	}
	fs := cmd.Flags()
	fs.StringVar(&dataDir, "data-dir", launch.DefaultCommon().DataDir, "the data directory of the sluice serve to sign in to")
	fs.StringVar(&tenant, "tenant", "acme", "your tenant")
	fs.StringVar(&subject, "subject", "", "who you are, e.g. an email (required)")
	fs.StringSliceVar(&policies, "policy", []string{auth.PolicyAdministrator}, "a policy you hold; repeatable")
	fs.StringVar(&environment, "environment", "production", "the environment resources are named in")
	fs.StringVar(&addr, "addr", "127.0.0.1", "Sluice's host")
	fs.StringVar(&file, "config", defaultConfigFile(), "the config file to write")
	fs.DurationVar(&ttl, "ttl", 12*time.Hour, "how long the token is valid")
	_ = cmd.MarkFlagRequired("subject")
	return cmd
}

// snake answers a JSON field name (lowerCamel or snake_case) as the
// snake_case path an update mask names.
func snake(s string) string {
	var b strings.Builder
	for _, r := range s {
		if r >= 'A' && r <= 'Z' {
			b.WriteByte('_')
			r += 'a' - 'A'
		}
		b.WriteRune(r)
	}
	return b.String()
}
