// Log sink: the embedder decides where petrel's log lines go.
#ifndef PETREL_LOG_H_
#define PETREL_LOG_H_

#include <functional>
#include <string_view>

namespace petrel {

enum class LogLevel { kDebug = 0, kInfo = 1, kWarn = 2, kError = 3 };
const char* LogLevelName(LogLevel level);

// Called on petrel's loop thread (the Step() caller in manual mode), and on the threads
// that call Orchestrator::Open and destroy the Orchestrator; never with petrel's locks
// held. Must not call back into the Orchestrator.
using LogSink = std::function<void(LogLevel level, std::string_view message)>;

// The default sink: "petrel <LEVEL>: message" on stderr.
LogSink StderrLogSink(LogLevel min_level = LogLevel::kInfo);

}  // namespace petrel

#endif  // PETREL_LOG_H_
