/** Structured JSON lines on stderr: one object per event, easy to grep and to ship. */
export type Fields = Record<string, unknown>;
export type Logger = {
  info(msg: string, fields?: Fields): void;
  warn(msg: string, fields?: Fields): void;
  error(msg: string, fields?: Fields): void;
  child(fields: Fields): Logger;
};

function replacer(_key: string, value: unknown): unknown {
  if (typeof value === "bigint") return value.toString();
  if (value instanceof Error) return { name: value.name, message: value.message };
  return value;
}

export function createLogger(
  base: Fields = {},
  level: "info" | "warn" | "error" | "silent" = "info",
): Logger {
  const rank = { info: 0, warn: 1, error: 2, silent: 3 }[level];
  const write = (lvl: "info" | "warn" | "error", lvlRank: number, msg: string, fields?: Fields) => {
    if (lvlRank < rank) return;
    process.stderr.write(
      `${JSON.stringify({ time: new Date().toISOString(), level: lvl, msg, ...base, ...fields }, replacer)}\n`,
    );
  };
  return {
    info: (msg, fields) => write("info", 0, msg, fields),
    warn: (msg, fields) => write("warn", 1, msg, fields),
    error: (msg, fields) => write("error", 2, msg, fields),
    child: (fields) => createLogger({ ...base, ...fields }, level),
  };
}
