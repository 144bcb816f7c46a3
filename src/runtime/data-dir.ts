/**
 * DATA_DIR is private to the service's user: PGlite's database (DATA_DIR/pg), the embedded nats-server's store
 * (DATA_DIR/nats), its credentials and the generated auth secret. Two parts:
 *
 * - privateUmask() before anything writes there, so what is created later (by this process, and by the
 *   nats-server child, which inherits the umask) gets no group/other bits;
 * - secureDataDir() to repair what exists: directories 0700, files 0600 (0700 if the owner could execute it).
 *   PGlite writes part of a new database with explicit modes (0666/0644) that the umask does not reach, so
 *   it must also run once that database has been created (after the first open).
 *
 * Symlinks under the directory are neither followed nor changed (their mode means nothing on Linux, and the
 * target may be anything); DATA_DIR itself may be a symlink to the real directory. The top directory is closed
 * first, so nobody else can reach an entry while the rest is walked.
 */
import { chmodSync, type Dirent, lstatSync, mkdirSync, readdirSync, type Stats, statSync } from "node:fs";
import { join } from "node:path";

export type SecureDataDirResult = {
  /** Entries looked at, DATA_DIR included (symlinks too). */
  checked: number;
  /** Entries whose mode was changed. */
  changed: number;
};

const PRIVATE_DIR = 0o700;
const PRIVATE_FILE = 0o600;
const OWNER_EXECUTE = 0o100;

/** The mode an entry of this kind and mode should have. */
function privateMode(kind: "directory" | "file" | "other", mode: number): number {
  if (kind === "directory") return PRIVATE_DIR;
  if (kind === "file") return PRIVATE_FILE | (mode & OWNER_EXECUTE);
  return mode & 0o700; // sockets, FIFOs: only drop group/other
}

function isGone(error: unknown): boolean {
  return (error as NodeJS.ErrnoException | undefined)?.code === "ENOENT";
}

/**
 * Creates `dir` (0700) when missing, then makes it and everything under it private to the owner. Entries that
 * disappear during the walk (a running nats-server or PGlite deleting files) are skipped; any other failure (an
 * entry owned by someone else: EPERM) throws with the path.
 */
export function secureDataDir(dir: string): SecureDataDirResult {
  let top: Stats;
  try {
    top = statSync(dir); // follows a symlinked DATA_DIR on purpose
  } catch (error) {
    if (!isGone(error)) throw error;
    mkdirSync(dir, { recursive: true, mode: PRIVATE_DIR });
    top = statSync(dir);
  }
  if (!top.isDirectory()) throw new Error(`DATA_DIR ${dir} is not a directory`);
  const result: SecureDataDirResult = { checked: 1, changed: 0 };
  if ((top.mode & 0o7777) !== PRIVATE_DIR) {
    chmodSync(dir, PRIVATE_DIR);
    result.changed++;
  }
  // Depth-first with an explicit stack: no recursion limit, one directory listing in memory at a time per level.
  const pending: string[] = [dir];
  for (let current = pending.pop(); current !== undefined; current = pending.pop()) {
    let entries: Dirent[];
    try {
      entries = readdirSync(current, { withFileTypes: true });
    } catch (error) {
      if (isGone(error)) continue;
      throw error;
    }
    for (const entry of entries) {
      const path = join(current, entry.name);
      result.checked++;
      if (entry.isSymbolicLink()) continue;
      try {
        // lstat, not the Dirent's type alone: the mode is needed, and lstat never follows a link.
        const stats = lstatSync(path);
        if (stats.isSymbolicLink()) continue;
        const kind = stats.isDirectory() ? "directory" : stats.isFile() ? "file" : "other";
        const mode = stats.mode & 0o7777;
        const wanted = privateMode(kind, mode);
        if (mode !== wanted) {
          chmodSync(path, wanted);
          result.changed++;
        }
        if (kind === "directory") pending.push(path);
      } catch (error) {
        if (isGone(error)) continue;
        throw new Error(`cannot make ${path} private: ${(error as Error).message}`, { cause: error });
      }
    }
  }
  return result;
}

/**
 * Sets the process umask to 077 (new files 0600, new directories 0700 unless created with a narrower mode) and
 * returns the previous one. Process-wide and inherited by child processes (the embedded nats-server).
 */
export function privateUmask(): number {
  return process.umask(0o077);
}
