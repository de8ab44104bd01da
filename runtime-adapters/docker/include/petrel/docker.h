// The Docker adapter (issue 15): containers run by dockerd, driven through its Engine
// API on its Unix socket (no docker CLI), each one a Docker container of the same name.
//
//   petrel::DockerOptions o;
//   o.state_dir = "/var/lib/petrel/docker";
//   auto runtime = petrel::NewDockerRuntime(o);  // /var/run/docker.sock
//   options.runtime = runtime.value();            // for Orchestrator::Open
//
// What petrel asks of Docker, and what it keeps itself:
//  - Containers carry petrel's labels and one naming this runtime's state dir (so petrels
//    sharing a dockerd never see each other's); Docker's restart policy stays "no":
//    petrel owns restarts. They keep running while petrel is down (and, with dockerd's
//    live-restore, while dockerd is) and are adopted by the next petrel.
//  - Images: a local archive (oci:, oci-archive:, docker-archive:) is loaded with
//    /images/load, an OCI layout converted to a docker-archive on the way (Docker 20.10
//    loads no OCI layout) and tagged "petrel.local/<hash of the state dir>/<hash of the
//    reference>:<hash of the file's identity>", so a second pull of an unchanged file
//    reads nothing; a registry reference is pulled by dockerd itself (/images/create).
//    The images this runtime pulled are listed, removed and pruned by it; others are
//    left alone.
//  - Output: Docker keeps it with offsets by time, not by byte. petrel follows each
//    running container's log stream (a thread and a connection per container) into the
//    same rotated files, with byte offsets, as the crun adapter's shim writes, and
//    resumes after the time of the last line it wrote when the stream breaks (dockerd
//    restarted) or petrel starts again, so a follower neither loses nor repeats a line.
//    The time is saved at most once a second while output flows: after a kill -9 of
//    petrel, up to a second of lines may come twice. Docker's own copy is capped at two
//    files of log_max_bytes, at least 4 MiB each (what comes while petrel is down).
//  - Exits come from dockerd's /events stream (the "die" events of containers with this
//    runtime's label, one connection and thread), and are told to the exit handler once
//    the container's log stream has ended too, so that its output is whole in petrel's
//    files. The stream is opened again when it breaks (dockerd restarted), from a
//    second before, after a listing that finds the containers that ended while nobody
//    listened. Each exit is told once, also across petrel restarts. Inspect and List
//    tell an exit once the output is whole (waiting up to 2 s for the pump).
//  - Calls go over a few kept connections to dockerd (the API version negotiated once).
//  - petrel's bridge network (NetworkMode::kBridge): the container is made with Docker's
//    network "none" (a namespace of its own with a loopback alone), and at Start petrel
//    keeps that namespace by name (Port::KeepNetns) and puts it on its bridge with the
//    ports published, as for crun. The container's process starts a few milliseconds
//    before its interface is there.
//  - Leases (ContainerSpec::lease): Docker has no process of petrel's beside each
//    container (as crun's shim and containerd's logger are), so Start forks one, a
//    watcher that holds the container's init by a pidfd, outlives petrel, and SIGKILLs
//    the init once the lease runs out, saying so in the container's lease.log. A
//    container started while petrel died between dockerd's start and the fork (a few
//    milliseconds) gets its watcher when the next petrel adopts it. Start refuses a
//    lease run out already.
//  - Registry credentials: DockerOptions::registry_auth_file.
//
// REQUIRES: root (the log files, signals to exec'd processes); dockerd with API 1.41 or
// later (Docker 20.10).
#ifndef PETREL_DOCKER_H_
#define PETREL_DOCKER_H_

#include <cstdint>
#include <memory>
#include <string>

#include "petrel/log.h"
#include "petrel/port.h"
#include "petrel/runtime.h"
#include "petrel/runtimes.h"
#include "petrel/status.h"

namespace petrel {

struct DockerOptions {
  // dockerd's socket: an absolute path or unix:///PATH; "" for /var/run/docker.sock.
  std::string endpoint;
  // petrel's files of its Docker containers (their output) and images; created 0700.
  // Required. Give each petrel its own: it also tells its containers from others'.
  std::string state_dir;
  // A container's output is kept in two files of at most this size each (Docker's own
  // copy too).
  int64_t log_max_bytes = 1 << 20;
  // Defaults to StderrLogSink().
  LogSink log_sink;
  // petrel's bridge network and the network namespaces. Defaults to DefaultPort().
  std::shared_ptr<Port> port;
  // A Docker config.json (RegistryAccess::auth_file), read when the runtime is made: the
  // credential of a reference's registry goes to dockerd with the pull (X-Registry-Auth).
  // Insecure registries and CAs are dockerd's own settings (daemon.json
  // "insecure-registries", /etc/docker/certs.d). "" for anonymous pulls.
  std::string registry_auth_file;
};

// Checks the options and that dockerd answers at the endpoint (and speaks API 1.41 or
// later), then adopts the containers an earlier petrel left with this state dir: their
// output is followed again. Unavailable, naming the socket, when dockerd does not answer.
Result<std::shared_ptr<ContainerRuntime>> NewDockerRuntime(const DockerOptions& options);

// Adds "docker" to `registry` (petrel/runtimes.h): its files in
// <RuntimeConfig::state_dir>/docker, dockerd at RuntimeConfig::endpoint.
Status RegisterDockerRuntime(RuntimeRegistry* registry);

// The socket path of a dockerd endpoint: PATH for "unix:///PATH" or "/PATH", the default
// socket for ""; InvalidArgument, quoting it, for anything else.
Result<std::string> DockerSocketPath(const std::string& endpoint);

}  // namespace petrel

#endif  // PETREL_DOCKER_H_
