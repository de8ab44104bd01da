// The Engine API calls the Docker adapter makes (issue 15), over a DockerEngine: each
// returns what petrel reads of dockerd's answer, and the engine's errors as they came.
//
// Thread-safety: as the engine's, one call at a time on one engine.
#ifndef PETREL_RUNTIME_ADAPTERS_DOCKER_CALLS_H_
#define PETREL_RUNTIME_ADAPTERS_DOCKER_CALLS_H_

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "petrel/status.h"
#include "runtime-adapters/docker/engine.h"

namespace petrel::internal {

// POST /images/load of the docker-archive (`docker save` output) that `archive` reads:
// the names dockerd says it loaded ("busybox:latest", or "sha256:<hex>" for an image
// without a name). InvalidArgument with dockerd's words for an archive it refuses
// ("POST /images/load: Error processing tar file(exit status 1): archive/tar: invalid
// tar header"); Corruption for an answer line that is no JSON object.
Result<std::vector<std::string>> DockerLoadImage(DockerEngine* engine,
                                                 const DockerEngine::Upload& archive);

// An image as dockerd reports it (GET /images/{name}/json).
struct DockerImage {
  std::string id;  // "sha256:<hex>"
  std::vector<std::string> repo_tags;
  int64_t size = 0;  // bytes, its layers included
};

// GET /images/{name}/json. NotFound when dockerd has no image of that name.
Result<DockerImage> DockerInspectImage(DockerEngine* engine, const std::string& name);

// POST /images/{name}/tag: names image `name` also `repo`:`tag`.
Status DockerTagImage(DockerEngine* engine, const std::string& name, const std::string& repo,
                      const std::string& tag);

// DELETE /images/{name}: untags it, and removes the image when no other name holds it:
// whether it was removed. NotFound for no such image; FailedPrecondition while a
// container uses it.
Result<bool> DockerRemoveImage(DockerEngine* engine, const std::string& name);

// How a registry pull goes, as dockerd tells it for one layer.
struct DockerPullStatus {
  std::string id;                  // the layer's short id, "" for the image's own lines
  std::string status;              // "Pulling fs layer", "Downloading", "Download complete", ...
  int64_t current = 0, total = 0;  // bytes, while downloading or extracting
};

// POST /images/create?fromImage=REF: dockerd pulls `ref` (a registry reference with a
// tag or digest) itself, each line of its progress handed to `on_status`; `stop` cuts
// it (OK returned, engine->stopped()). Unavailable with dockerd's words for a pull that
// fails ("POST /images/create: manifest for x:1 not found: manifest unknown"), as for a
// registry that cannot be reached; Corruption for an answer line that is no JSON object.
// `registry_auth` ("" for an anonymous pull) is DockerRegistryAuth's value.
Status DockerPullImage(DockerEngine* engine, const std::string& ref,
                       const std::string& registry_auth,
                       const std::function<void(const DockerPullStatus&)>& on_status,
                       const std::function<bool()>& stop);

// The X-Registry-Auth header's value that hands dockerd a registry's credential for a
// pull: base64url of {"username", "password", "serveraddress"}, or of
// {"identitytoken", "serveraddress"} for an identity token. `server` is the registry
// as a reference names it ("registry.local:5000"); docker.io is sent as Docker's own
// key, "https://index.docker.io/v1/".
std::string DockerRegistryAuth(const std::string& user, const std::string& password,
                               const std::string& identity_token, const std::string& server);

// A container as dockerd reports it: inspected (DockerInspectContainer) or listed
// (DockerListContainers, which leaves out what only inspection tells: the pid, the exit
// code, the times and the OOM kill).
struct DockerContainer {
  std::string id;    // 64 hex digits
  std::string name;  // without the leading '/'
  std::map<std::string, std::string> labels;
  std::string image;   // as created: the name or id it was created from
  std::string status;  // "created", "running", "paused", "restarting", "removing",
                       // "exited", "dead"
  bool running = false;
  bool oom_killed = false;
  int pid = 0;        // 0 unless running
  int exit_code = 0;  // when exited: the code, or 128+N for death by signal N
  std::string error;  // why it could not start, "" when it did
  std::chrono::system_clock::time_point created_at;   // inspected only
  std::chrono::system_clock::time_point started_at;   // the epoch for never
  std::chrono::system_clock::time_point finished_at;  // the epoch for not yet
};

// POST /containers/create?name=NAME with `config` (the Engine API's ContainerConfig with
// its HostConfig, JSON): the container's id. FailedPrecondition "... is already in use"
// for a name taken; NotFound for an image dockerd does not have; InvalidArgument with
// dockerd's words for a config it refuses.
Result<std::string> DockerCreateContainer(DockerEngine* engine, const std::string& name,
                                          const std::string& config);

// POST /containers/{id}/start. OK when it is already running. NotFound for no such
// container; InvalidArgument (dockerd answers 400) with runc's words when its process
// cannot start ("... OCI runtime create failed: ... exec: \"/x\": stat /x: no such file
// or directory: unknown").
Status DockerStartContainer(DockerEngine* engine, const std::string& id);

// POST /containers/{id}/kill?signal=N. NotFound for no such container;
// FailedPrecondition ("... is not running") when it is not running.
Status DockerKillContainer(DockerEngine* engine, const std::string& id, int signal);

// DELETE /containers/{id}, with `force` killing it first when it runs, and its
// anonymous volumes. NotFound for no such container; FailedPrecondition for a running
// one without `force`.
Status DockerRemoveContainer(DockerEngine* engine, const std::string& id, bool force);

// GET /containers/{id}/json. NotFound for no such container.
Result<DockerContainer> DockerInspectContainer(DockerEngine* engine, const std::string& id);

// GET /containers/json?all=1 with label filters ("petrel.container=true", or a key
// alone: has the label): every container, running or not, that has all of them.
Result<std::vector<DockerContainer>> DockerListContainers(DockerEngine* engine,
                                                          const std::vector<std::string>& labels);

// POST /containers/{id}/wait: blocks until the container is not running (answers at once
// when it is not), within the engine's timeout; its exit code. NotFound for no such
// container.
Result<int> DockerWaitContainer(DockerEngine* engine, const std::string& id);

// An event of dockerd's (GET /events), as petrel reads it.
struct DockerEvent {
  std::string type;                               // "container", "image", "network", ...
  std::string action;                             // "create", "start", "die", "destroy", "oom", ...
  std::string id;                                 // the actor's: a container's 64 hex digits
  std::map<std::string, std::string> attributes;  // labels, "name", "exitCode", ...
  std::chrono::system_clock::time_point time;
};

// GET /events of containers that have all of `labels` (as DockerListContainers's), since
// `since` (the epoch: from now on; dockerd keeps the last 256 events), each handed to
// `on_event` as it comes, until `stop` says so or dockerd ends the stream (it stops).
// Errors as DockerEngine::Stream's; also Corruption for a line that is no event.
Status DockerEvents(DockerEngine* engine, const std::vector<std::string>& labels,
                    std::chrono::system_clock::time_point since,
                    const std::function<Status(DockerEvent event)>& on_event,
                    const std::function<bool()>& stop);

// GET /containers/{id}/logs?stdout=1&stderr=1 of a container without a terminal: its
// output so far (with `follow`, and what it writes until it exits or `stop` says so),
// each chunk handed to `on_chunk` as it comes. With `timestamps`, each line starts
// with the time dockerd received it and a space (RFC 3339, nanoseconds). `since`: only
// what came after that (the epoch: all). NotFound for no such container.
Status DockerLogs(DockerEngine* engine, const std::string& id, bool follow, bool timestamps,
                  std::chrono::system_clock::time_point since,
                  const std::function<Status(DockerLogChunk chunk)>& on_chunk,
                  const std::function<bool()>& stop);

// POST /containers/{id}/exec: a process to run in the running container, `argv` as its
// command, with the container's user, environment and working directory, its stdout and
// stderr attached: its exec id. NotFound for no such container; FailedPrecondition
// ("... is not running") when the container does not run.
Result<std::string> DockerCreateExec(DockerEngine* engine, const std::string& id,
                                     const std::vector<std::string>& argv);

// POST /exec/{exec id}/start, attached: runs the process and hands each chunk of its
// output to `on_chunk` as it comes, until it ends (dockerd closes the stream) or `stop`
// says so (OK returned, engine->stopped()).
Status DockerStartExec(DockerEngine* engine, const std::string& exec_id,
                       const std::function<Status(DockerLogChunk chunk)>& on_chunk,
                       const std::function<bool()>& stop);

// An exec'd process as dockerd reports it (GET /exec/{exec id}/json).
struct DockerExec {
  bool running = false;
  int exit_code = 0;  // when ended
  int pid = 0;        // on the host; 0 once ended
};

// GET /exec/{exec id}/json. NotFound for no such process (its container is gone).
Result<DockerExec> DockerInspectExec(DockerEngine* engine, const std::string& exec_id);

}  // namespace petrel::internal

#endif  // PETREL_RUNTIME_ADAPTERS_DOCKER_CALLS_H_
