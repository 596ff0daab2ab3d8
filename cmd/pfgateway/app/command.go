package app

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/KimMachineGun/automemlimit/memlimit"
	"github.com/spf13/cobra"
	"k8s.io/klog/v2"

	"github.com/pfgateway/pfgateway/cmd/pfgateway/app/options"
)

// NewCommand is `pfgateway`: run the gateway, or one of its subcommands.
func NewCommand() *cobra.Command {
	o := options.NewOptions()
	cmd := &cobra.Command{
		Use:           "pfgateway",
		Short:         "A bastion for kubectl port-forward",
		SilenceUsage:  true,
		SilenceErrors: true,
		Args:          cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			setMemoryLimit(memlimit.FromCgroup)
			c, err := Complete(o)
			if err != nil {
				return err
			}
			g, err := New(c)
			if err != nil {
				return err
			}
			return g.Run(SignalContext())
		},
	}
	o.AddFlags(cmd.Flags())
	addKlogFlags(cmd)
	cmd.AddCommand(newDemoCommand(), newKubeconfigCommand())
	return cmd
}

func addKlogFlags(cmd *cobra.Command) {
	fs := flag.NewFlagSet("klog", flag.ContinueOnError)
	klog.InitFlags(fs)
	cmd.PersistentFlags().AddGoFlagSet(fs)
}

// SignalContext ends on the first SIGTERM or SIGINT; a second one exits at once.
func SignalContext() context.Context {
	ctx, cancel := context.WithCancel(context.Background())
	ch := make(chan os.Signal, 2)
	signal.Notify(ch, syscall.SIGTERM, syscall.SIGINT)
	go func() {
		<-ch
		cancel()
		<-ch
		fmt.Fprintln(os.Stderr, "second signal: exiting now")
		os.Exit(1)
	}()
	return ctx
}
