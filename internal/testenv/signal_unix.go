package testenv

import "syscall"

var terminate = syscall.SIGTERM
