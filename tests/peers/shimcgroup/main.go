// Command shimcgroup creates a task the way containerd's integration test TestShimInCgroup
// does: with the containerd 1.7 Go client's WithShimCgroup. For a runtime whose name does not
// start with io.containerd.runc, that client sends the legacy
// containerd.linux.runc.CreateOptions (shim_cgroup = field 9); ctr has no flag for it and the
// 1.6/1.7 CRI plugin never sets it, so this is the only real client that does.
//
// Usage: shimcgroup ADDRESS NAMESPACE RUNTIME ROOTFS ID CGROUP
// Prints the task's pid; the task keeps running (the caller removes it with ctr).
package main

import (
	"context"
	"fmt"
	"os"

	"github.com/containerd/containerd"
	"github.com/containerd/containerd/cio"
	"github.com/containerd/containerd/namespaces"
	"github.com/containerd/containerd/oci"
)

func main() {
	if len(os.Args) != 7 {
		fmt.Fprintln(os.Stderr, "usage: shimcgroup ADDRESS NAMESPACE RUNTIME ROOTFS ID CGROUP")
		os.Exit(2)
	}
	address, ns, runtime, rootfs, id, cgroup := os.Args[1], os.Args[2], os.Args[3], os.Args[4], os.Args[5], os.Args[6]
	if err := run(address, ns, runtime, rootfs, id, cgroup); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}

func run(address, ns, runtime, rootfs, id, cgroup string) error {
	client, err := containerd.New(address)
	if err != nil {
		return err
	}
	defer client.Close()
	ctx := namespaces.WithNamespace(context.Background(), ns)
	container, err := client.NewContainer(ctx, id,
		containerd.WithRuntime(runtime, nil),
		containerd.WithNewSpec(oci.WithRootFSPath(rootfs), oci.WithProcessArgs("/bin/sleep", "1000")))
	if err != nil {
		return err
	}
	task, err := container.NewTask(ctx, cio.NullIO, containerd.WithShimCgroup(cgroup))
	if err != nil {
		return err
	}
	if err := task.Start(ctx); err != nil {
		return err
	}
	fmt.Println(task.Pid())
	return nil
}
