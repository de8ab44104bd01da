// What runc says, as the daemons that run it (containerd, dockerd) pass it on, read back
// for what petrel tells its own callers.
//
// Thread-safety: pure functions.
#ifndef PETREL_LIB_OCI_RUNC_WORDS_H_
#define PETREL_LIB_OCI_RUNC_WORDS_H_

#include <string>
#include <string_view>

namespace petrel::internal {

// The part of `message` (an exec's refusal) that says `binary` is not in the container:
// runc 1.1 writes `exec: "x": executable file not found in $PATH` or `exec: "/x": stat
// /x: no such file or directory`, from there to the end, without the ": unknown" that
// containerd appends (its name of the error's kind). "" when `message` says something
// else. A command that cannot run is told as a shell tells it: exit code 127 with these
// words as its output (ContainerRuntime::Exec).
std::string RuncNotFoundWords(std::string_view message, std::string_view binary);

}  // namespace petrel::internal

#endif  // PETREL_LIB_OCI_RUNC_WORDS_H_
