package main

import (
	"github.com/spf13/cobra"

	"github.com/sluicehq/sluice/pkg/launch"
)

func rootCommand() *cobra.Command {
	root := &cobra.Command{
		Use:           "sluice",
		Short:         "Send Arrow query results to customers' S3 buckets",
		SilenceUsage:  true,
		SilenceErrors: true,
		PersistentPreRunE: func(cmd *cobra.Command, _ []string) error {
			// Flags not given on the command line come from SLUICE_*.
			if err := launch.ApplyEnv(cmd.Flags()); err != nil {
				return err
			}
			return nil
		},
	}
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return &exitError{code: exitInvalid, err: err} })
	root.AddCommand(serveCommand(), tokenCommand(), healthCommand(), demoCommand(), loginCommand(), certsCommand(),
		credentialCommand(), destinationCommand(), deliverCommand(), deliveryCommand(), workflowCommand(), notificationCommand(), subscriptionCommand(), eventCommand())
	return root
}
