package server

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

var readmeFile = filepath.Join("..", "README.md")

// TestREADMEListsEveryMetric keeps the README's metrics table complete.
func TestREADMEListsEveryMetric(t *testing.T) {
	b, err := os.ReadFile(readmeFile)
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range metricDefs {
		if !strings.Contains(string(b), "| `"+d.name+"` | "+d.typ+" |") {
			t.Errorf("README's metrics table has no row for %s (%s)", d.name, d.typ)
		}
	}
	for _, r := range metricRef.FindAllString(string(b), -1) {
		if !knownMetric(r) {
			t.Errorf("README names %s, which no node exports", r)
		}
	}
}
