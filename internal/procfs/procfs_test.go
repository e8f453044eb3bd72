package procfs

import (
	"os"
	"os/exec"
	"runtime"
	"slices"
	"testing"
)

func TestOwnProcess(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("reads /proc")
	}
	self := os.Getpid()
	f := StatFields(self)
	if len(f) < 13 || f[0] == "Z" {
		t.Fatalf("stat fields of self: %v", f)
	}
	if !slices.Contains(PIDs(), self) {
		t.Fatal("PIDs lacks this process")
	}
	// A child shows up in the tree.
	cmd := exec.Command("sleep", "5")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	tr := Tree(self)
	if tr[0] != self || !slices.Contains(tr, cmd.Process.Pid) {
		t.Fatalf("tree %v lacks self first and child %d", tr, cmd.Process.Pid)
	}
	if RSSKiB([]int{self}) <= 0 {
		t.Fatal("no resident memory")
	}
	x := make([]byte, 1<<20)
	for i := 0; i < 200; i++ { // burn a little CPU
		for j := range x {
			x[j]++
		}
	}
	if CPUTicks([]int{self}) <= 0 {
		t.Fatal("no CPU time")
	}
	if StatFields(-1) != nil {
		t.Fatal("stat of a missing process")
	}
}
