// The containerd adapter's public entry points (issue 16). So far: the logger process
// containerd's runc shim runs for each container petrel creates, so that the
// container's output lands in the same size-capped, rotated files as with the crun
// adapter, and outlives petrel.
//
// An embedder's main() hands over to the logger when containerd started it as one:
//
//   int main(int argc, char** argv) {
//     if (petrel::IsContainerdLoggerCall(argc, argv)) {
//       return petrel::RunContainerdLogger(argc, argv);
//     }
//     ...
//   }
//
// petreld does so; an embedder that points the adapter at its own binary must too.
#ifndef PETREL_CONTAINERD_H_
#define PETREL_CONTAINERD_H_

namespace petrel {

// True when argv is a logger call from containerd's shim: its first argument is one of
// the logger's keys ("petrel-log-dir", "petrel-log-max"). Cheap; touches nothing.
bool IsContainerdLoggerCall(int argc, char** argv);

// Runs the logger as containerd's shim starts a `binary://` logger: the container's
// stdout on fd 3 and stderr on fd 4, fd 5 to close once ready, and the URI's query as
// argument pairs in any order:
//   petrel-log-dir <absolute directory, existing>   petrel-log-max <bytes per file, > 0>
// Copies fd 3 and fd 4, as their bytes arrive, into "<dir>/log.<base offset>" files
// rotated at the cap (two kept, continuing files already there), closes fd 5 once the
// files are open, and returns 0 when both reach end of file, or after draining them
// on SIGTERM (the shim's way to stop it). Uses one fixed buffer: no allocation per read.
// Returns 2 after a one-line error on stderr for bad arguments or missing fds; 1 after
// one for a failure of its own (the directory cannot be listed, poll fails).
// REQUIRES: called from main(), single-threaded; it owns the process until it returns.
int RunContainerdLogger(int argc, char** argv);

}  // namespace petrel

#endif  // PETREL_CONTAINERD_H_
