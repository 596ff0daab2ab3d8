// Command pfgateway is a bastion for kubectl port-forward.
package main

import (
	"fmt"
	"os"

	"github.com/pfgateway/pfgateway/cmd/pfgateway/app"
)

func main() {
	if err := app.NewCommand().Execute(); err != nil {
		fmt.Fprintln(os.Stderr, "error:", err)
		os.Exit(1)
	}
}
