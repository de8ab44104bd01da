#include "petrel/log.h"

#include <cstdio>

namespace petrel {

const char* LogLevelName(LogLevel level) {
  switch (level) {
    case LogLevel::kDebug: return "DEBUG";
    case LogLevel::kInfo: return "INFO";
    case LogLevel::kWarn: return "WARN";
    case LogLevel::kError: return "ERROR";
  }
  return "?";
}

LogSink StderrLogSink(LogLevel min_level) {
  return [min_level](LogLevel level, std::string_view message) {
    if (level < min_level) return;
    std::fprintf(stderr, "petrel %s: %.*s\n", LogLevelName(level), static_cast<int>(message.size()),
                 message.data());
  };
}

}  // namespace petrel
