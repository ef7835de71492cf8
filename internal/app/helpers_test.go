package app_test

import (
	"os"
	"path/filepath"
	"strings"
)

func readToken(dir string) (string, error) {
	b, err := os.ReadFile(filepath.Join(dir, "admin.token"))
	return strings.TrimSpace(string(b)), err
}
