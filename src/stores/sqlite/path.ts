import { lstatSync, realpathSync } from 'node:fs';
import { basename, dirname, join, resolve } from 'node:path';

/**
 * The real path of an SQLite file. SQLite follows a symbolic link and keeps
 * its WAL beside the file the link points to (`<real path>-wal`); the WAL
 * sync and the one-dispatcher lock must name the same files, or the sync
 * opens a WAL nobody writes and two dispatchers on two links to one file
 * each take a lock of their own. A file that does not exist yet resolves
 * through its folder.
 */
export function realDatabasePath(path: string): string {
  if (path === ':memory:') return path;
  try {
    return realpathSync(path);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
  }
  if (isDanglingLink(path)) {
    throw new Error(`${path} is a symbolic link to a file that does not exist; point it at the database file, or give the real path`);
  }
  return join(realpathSync(dirname(resolve(path))), basename(path));
}

function isDanglingLink(path: string): boolean {
  try {
    return lstatSync(path).isSymbolicLink();
  } catch {
    return false;
  }
}
