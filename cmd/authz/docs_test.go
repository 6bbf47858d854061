package main

import (
	"flag"
	"fmt"
	"os"
	"regexp"
	"strings"
	"testing"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

var update = flag.Bool("update", false, "rewrite the flag tables of docs/configuration.md from the commands")

const configDoc = "../../docs/configuration.md"

// TestFlagTables keeps docs/configuration.md's flag tables exactly what the
// commands define: every flag's name, environment variables, default and
// description, in the order --help lists them. Any drift fails; after
// changing a flag, regenerate the tables with
//
//	go test ./cmd/authz -run TestFlagTables -update
func TestFlagTables(t *testing.T) {
	doc := readDoc(t, configDoc)
	out := doc
	for _, cmd := range commandsWithFlags(newRoot()) {
		path := strings.TrimPrefix(cmd.CommandPath(), "authz ")
		start, end := "<!-- flags:"+path+" -->\n", "<!-- /flags:"+path+" -->"
		i, j := strings.Index(out, start), strings.Index(out, end)
		if i < 0 || j < i {
			t.Errorf("docs/configuration.md has no %q ... %q section for authz %s", start[:len(start)-1], end, path)
			continue
		}
		want := flagTable(cmd)
		if got := out[i+len(start) : j]; got != want {
			if !*update {
				t.Errorf("docs/configuration.md's flags of authz %s differ from the command's (regenerate: go test ./cmd/authz -run TestFlagTables -update):\n%s", path, lineDiff(got, want))
			}
			out = out[:i+len(start)] + want + out[j:]
		}
	}
	if *update && out != doc {
		if err := os.WriteFile(configDoc, []byte(out), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// commandsWithFlags is every command under root, depth first, that has
// flags of its own.
func commandsWithFlags(root *cobra.Command) []*cobra.Command {
	var out []*cobra.Command
	for _, c := range root.Commands() {
		if c.Flags().HasFlags() {
			out = append(out, c)
		}
		out = append(out, commandsWithFlags(c)...)
	}
	return out
}

// flagTable is the Markdown table of cmd's flags.
func flagTable(cmd *cobra.Command) string {
	var b strings.Builder
	b.WriteString("| flag | environment | default | meaning |\n| --- | --- | --- | --- |\n")
	cmd.Flags().VisitAll(func(f *pflag.Flag) {
		env := "`" + envName(f.Name) + "`"
		for _, a := range envAliases[f.Name] {
			env += ", `" + a + "`"
		}
		def := "—"
		if !zeroDefault(f) {
			def = "`" + f.DefValue + "`"
		}
		fmt.Fprintf(&b, "| `--%s` | %s | %s | %s |\n", f.Name, env, def, strings.ReplaceAll(f.Usage, "|", "\\|"))
	})
	return b.String()
}

// zeroDefault reports whether f's default is its type's zero value, which
// --help leaves out too.
func zeroDefault(f *pflag.Flag) bool {
	switch f.DefValue {
	case "", "0", "0s", "false", "[]":
		return true
	}
	return false
}

// lineDiff lists the lines only in got (-) and only in want (+).
func lineDiff(got, want string) string {
	in := func(s string) map[string]bool {
		m := make(map[string]bool)
		for _, l := range strings.Split(s, "\n") {
			m[l] = true
		}
		return m
	}
	g, w := in(got), in(want)
	var b strings.Builder
	for _, l := range strings.Split(got, "\n") {
		if !w[l] {
			b.WriteString("- " + l + "\n")
		}
	}
	for _, l := range strings.Split(want, "\n") {
		if !g[l] {
			b.WriteString("+ " + l + "\n")
		}
	}
	return b.String()
}

// TestEveryMetricDocumented checks that each metric name the code registers
// appears in docs/metrics.md.
func TestEveryMetricDocumented(t *testing.T) {
	doc := readDoc(t, "../../docs/metrics.md")
	re := regexp.MustCompile(`"(authz_[a-z_]+)"`)
	for _, dir := range []string{"../../authz", "../../frontdoor", "../../logout", "../../signoff", "../../tokens"} {
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

// The README names the Go that go.mod's go line asks for (install-deps.sh
// checks that one), not a number of its own.
func TestReadmeGoVersion(t *testing.T) {
	mod := readDoc(t, "../../go.mod")
	var want string
	for _, line := range strings.Split(mod, "\n") {
		if v, ok := strings.CutPrefix(line, "go "); ok {
			want = strings.TrimSpace(v)
		}
	}
	if want == "" {
		t.Fatal("go.mod has no go line")
	}
	if readme := readDoc(t, "../../README.md"); !strings.Contains(readme, "Go ≥ "+want+" (go.mod") {
		t.Errorf("README.md does not say Go ≥ %s (go.mod's go line)", want)
	}
}
