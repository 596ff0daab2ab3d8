package app

import (
	"github.com/pfgateway/pfgateway/cmd/pfgateway/app/options"
	"github.com/pfgateway/pfgateway/upgrade"
)

func reconnect(o options.ReconnectOptions) upgrade.Reconnect {
	return upgrade.Reconnect{
		Enabled: o.Enabled, Attempts: o.Attempts, Backoff: o.Backoff, MaxBackoff: o.MaxBackoff,
		LossMessage: o.LossMessage, ResetKubeletErrors: o.ForwardError == options.ForwardErrorReset,
	}
}
