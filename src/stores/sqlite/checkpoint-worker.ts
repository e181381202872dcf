import { DatabaseSync } from 'node:sqlite';
import { parentPort, workerData } from 'node:worker_threads';

/**
 * The body of the checkpointer's thread (./checkpointer.ts): its own
 * connection to the database file, copying the WAL back into the database
 * (PASSIVE: it never blocks the writer) whenever asked, and answering with
 * how many WAL frames are left to copy.
 */
const { path } = workerData as { path: string };
const db = new DatabaseSync(path);
// NORMAL in WAL mode: the WAL is fsynced before it is copied, the database file after
db.exec('PRAGMA synchronous = NORMAL');
const checkpoint = db.prepare('PRAGMA wal_checkpoint(PASSIVE)');

parentPort!.on('message', (request: 'checkpoint' | 'close') => {
  if (request === 'close') {
    db.close();
    parentPort!.close();
    return;
  }
  let left = -1;
  try {
    // busy: another checkpoint ran meanwhile; log: frames in the WAL; checkpointed: frames copied
    const result = checkpoint.get() as { busy: number; log: number; checkpointed: number };
    left = result.log - result.checkpointed;
  } catch {
    // SQLITE_BUSY while the writer holds a lock it needs: try again next time
  }
  parentPort!.postMessage(left);
});
