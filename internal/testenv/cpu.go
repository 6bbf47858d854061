package testenv

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// Pid is the process id.
func (p *Process) Pid() int { return p.cmd.Process.Pid }

// Pid is the redis-server's process id.
func (r *Redis) Pid() int { return r.proc.Pid() }

// CPUTime is the CPU time (user and system, every thread) the process
// has used so far, in nanoseconds where Linux keeps them (schedstat)
// rather than the 10 ms ticks of /proc/<pid>/stat: a process using 1 % of
// a core for 3 s is 3 ticks.
func CPUTime(pid int) (time.Duration, error) {
	tasks, err := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/schedstat", pid))
	if err != nil || len(tasks) == 0 {
		return 0, fmt.Errorf("cpu time of %d: no /proc/%d/task/*/schedstat", pid, pid)
	}
	var sum time.Duration
	for _, f := range tasks {
		b, err := os.ReadFile(f)
		if err != nil {
			continue // a thread that just ended
		}
		fields := strings.Fields(string(b))
		if len(fields) == 0 {
			continue
		}
		ns, err := strconv.ParseInt(fields[0], 10, 64)
		if err != nil {
			return 0, fmt.Errorf("cpu time of %d: %s: %w", pid, f, err)
		}
		sum += time.Duration(ns)
	}
	return sum, nil
}
