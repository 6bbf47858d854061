package main

import (
	"os"
	"regexp"
	"strings"
	"testing"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// TestEveryFlagDocumented keeps docs/configuration.md honest: each flag of
// each command, and its environment variable, must appear there.
func TestEveryFlagDocumented(t *testing.T) {
	doc := readDoc(t, "../../docs/configuration.md")
	var cmds []*cobra.Command
	for _, c := range newRoot().Commands() {
		cmds = append(cmds, c)
		cmds = append(cmds, c.Commands()...)
	}
	for _, cmd := range cmds {
		cmd.Flags().VisitAll(func(f *pflag.Flag) {
			if !strings.Contains(doc, "`--"+f.Name+"`") {
				t.Errorf("authz %s --%s is not in docs/configuration.md", cmd.Name(), f.Name)
			}
			if !strings.Contains(doc, "`"+envName(f.Name)+"`") {
				t.Errorf("%s is not in docs/configuration.md", envName(f.Name))
			}
		})
	}
}

// TestEveryMetricDocumented checks that each metric name the code registers
// appears in docs/metrics.md.
func TestEveryMetricDocumented(t *testing.T) {
	doc := readDoc(t, "../../docs/metrics.md")
	re := regexp.MustCompile(`"(authz_[a-z_]+)"`)
	for _, dir := range []string{"../../authz", "../../logout"} {
		entries, _ := os.ReadDir(dir)
		for _, e := range entries {
			if !strings.HasSuffix(e.Name(), ".go") || strings.HasSuffix(e.Name(), "_test.go") {
				continue
			}
			src := readDoc(t, dir+"/"+e.Name())
			for _, m := range re.FindAllStringSubmatch(src, -1) {
				if !strings.Contains(doc, "`"+m[1]+"`") {
					t.Errorf("metric %s (%s) is not in docs/metrics.md", m[1], e.Name())
				}
			}
		}
	}
}

func readDoc(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
