package cluster

import (
	"context"
	"errors"
	"io/fs"
	"slices"
	"testing"
	"time"

	"wsgate/internal/testutil/redistest"
)

func TestStorageFiles(t *testing.T) {
	srv := redistest.Start(t)
	c, _ := newCluster(t, srv.URL(), "a")
	s := c.Storage()
	ctx := context.Background()
	if _, err := s.Load(ctx, "certificates/ca/example.com/example.com.crt"); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("Load of a missing key: %v, want fs.ErrNotExist", err)
	}
	files := map[string]string{
		"certificates/ca/example.com/example.com.crt":  "CERT",
		"certificates/ca/example.com/example.com.key":  "KEY",
		"certificates/ca/example.com/example.com.json": "{}",
		"certificates/ca/other.org/other.org.crt":      "CERT2",
		"certificates/cab/x":                           "not under certificates/ca",
		"acme/ca/users/ops@example.com/ops.json":       "USER",
	}
	for k, v := range files {
		if err := s.Store(ctx, k, []byte(v)); err != nil {
			t.Fatal(err)
		}
	}
	b, err := s.Load(ctx, "certificates/ca/example.com/example.com.crt")
	if err != nil || string(b) != "CERT" {
		t.Fatalf("Load = %q, %v", b, err)
	}
	st, err := s.Stat(ctx, "certificates/ca/example.com/example.com.key")
	if err != nil || !st.IsTerminal || st.Size != 3 || time.Since(st.Modified) > time.Minute {
		t.Errorf("Stat of a file = %+v, %v", st, err)
	}
	if st, err := s.Stat(ctx, "certificates/ca"); err != nil || st.IsTerminal {
		t.Errorf("Stat of a directory = %+v, %v", st, err)
	}
	if _, err := s.Stat(ctx, "certificates/c"); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Stat of a partial component: %v, want fs.ErrNotExist", err)
	}
	if !s.Exists(ctx, "acme") || s.Exists(ctx, "acm") {
		t.Error("Exists is wrong about directories")
	}
	list, err := s.List(ctx, "certificates/ca", false)
	slices.Sort(list)
	if want := []string{"certificates/ca/example.com", "certificates/ca/other.org"}; err != nil || !slices.Equal(list, want) {
		t.Errorf("List = %q, %v; want %q", list, err, want)
	}
	list, _ = s.List(ctx, "certificates/ca", true)
	if len(list) != 6 || !slices.Contains(list, "certificates/ca/other.org/other.org.crt") {
		t.Errorf("recursive List = %q", list)
	}
	if err := s.Delete(ctx, "certificates/ca/example.com"); err != nil {
		t.Fatal(err)
	}
	if s.Exists(ctx, "certificates/ca/example.com/example.com.crt") || s.Exists(ctx, "certificates/ca/example.com") {
		t.Error("Delete of a directory left its keys")
	}
	if !s.Exists(ctx, "certificates/ca/other.org/other.org.crt") || !s.Exists(ctx, "certificates/cab/x") {
		t.Error("Delete removed keys outside the directory")
	}
	if err := s.Delete(ctx, "no/such/key"); err != nil {
		t.Errorf("Delete of a missing key: %v", err)
	}
}

func TestStorageLocks(t *testing.T) {
	srv := redistest.Start(t)
	a, _ := newCluster(t, srv.URL(), "a")
	b, _ := newCluster(t, srv.URL(), "b")
	sa, sb := a.Storage(), b.Storage()
	ctx := context.Background()
	if err := sa.Lock(ctx, "issue_cert_example.com"); err != nil {
		t.Fatal(err)
	}
	if ok, err := sb.TryLock(ctx, "issue_cert_example.com"); ok || err != nil {
		t.Fatalf("a held lock was taken again: %v, %v", ok, err)
	}
	// Held past its lease: the holder renews it.
	if testing.Short() {
		t.Skip("the lease renewal takes LockTTL")
	}
	wait, cancel := context.WithTimeout(ctx, LockTTL+2*time.Second)
	defer cancel()
	if err := sb.Lock(wait, "issue_cert_example.com"); err == nil {
		t.Fatal("the lock was taken while its holder renews it")
	}
	// Released: the other one gets it at once.
	if err := sa.Unlock(ctx, "issue_cert_example.com"); err != nil {
		t.Fatal(err)
	}
	lctx, lcancel := context.WithTimeout(ctx, 2*time.Second)
	defer lcancel()
	if err := sb.Lock(lctx, "issue_cert_example.com"); err != nil {
		t.Fatalf("the released lock: %v", err)
	}
	// A holder that dies (its renewal stops) loses the lock within LockTTL.
	sb.mu.Lock()
	h := sb.locks["issue_cert_example.com"]
	sb.mu.Unlock()
	h.stop()
	<-h.done
	died := time.Now()
	kctx, kcancel := context.WithTimeout(ctx, LockTTL+2*time.Second)
	defer kcancel()
	if err := sa.Lock(kctx, "issue_cert_example.com"); err != nil {
		t.Fatalf("a dead holder's lock was not released: %v", err)
	}
	if d := time.Since(died); d > LockTTL+time.Second {
		t.Errorf("a dead holder's lock was released after %v, want within %v", d, LockTTL)
	}
}
