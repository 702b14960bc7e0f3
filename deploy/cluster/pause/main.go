// Command pause is the pod sandbox ("pause") image's only process: it holds the pod's
// namespaces, reaps orphaned children (it is PID 1 of the pod when the PID namespace is
// shared) and exits 0 on SIGTERM or SIGINT. Built static (CGO_ENABLED=0) so the image is
// this one file.
package main

import (
	"os"
	"os/signal"
	"syscall"
)

func main() {
	sigs := make(chan os.Signal, 8)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT, syscall.SIGCHLD)
	for s := range sigs {
		if s != syscall.SIGCHLD {
			os.Exit(0)
		}
		for {
			var ws syscall.WaitStatus
			pid, err := syscall.Wait4(-1, &ws, syscall.WNOHANG, nil)
			if pid <= 0 || err != nil {
				break
			}
		}
	}
}
