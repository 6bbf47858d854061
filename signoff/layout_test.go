package signoff

import (
	"go/parser"
	"go/token"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// The read path never depends on the write side: authz imports neither
// signoff nor tokens (nor their walk), and logout/, which any Go service
// embeds, imports nothing of authz's.
func TestReadPathImportsNoWriteSide(t *testing.T) {
	for dir, banned := range map[string][]string{
		"../authz":  {"github.com/authz/authz/signoff", "github.com/authz/authz/tokens", "github.com/authz/authz/internal/keyscan"},
		"../logout": {"github.com/authz/authz/authz", "github.com/authz/authz/signoff", "github.com/authz/authz/tokens"},
	} {
		files, err := filepath.Glob(filepath.Join(dir, "*.go"))
		if err != nil || len(files) == 0 {
			t.Fatalf("%s: no Go files (%v)", dir, err)
		}
		for _, f := range files {
			if strings.HasSuffix(f, "_test.go") {
				continue
			}
			af, err := parser.ParseFile(token.NewFileSet(), f, nil, parser.ImportsOnly)
			if err != nil {
				t.Fatal(err)
			}
			for _, imp := range af.Imports {
				path, _ := strconv.Unquote(imp.Path.Value)
				for _, b := range banned {
					if path == b {
						t.Errorf("%s imports %s", f, path)
					}
				}
			}
		}
	}
}
