import { DatabaseSync } from 'node:sqlite';
import { parentPort, workerData } from 'node:worker_threads';

/**
 * The body of the checkpointer's thread (./checkpointer.ts): its own
 * connection to the database file, copying the WAL back into the database
 * (PASSIVE: it never blocks the writer) whenever asked, and answering with
 * the WAL's size and how many of its frames are left to copy.
 */
const { path } = workerData as { path: string };
const db = new DatabaseSync(path);
// NORMAL in WAL mode: the WAL is fsynced before it is copied, the database file after
db.exec('PRAGMA synchronous = NORMAL');
const checkpoint = db.prepare('PRAGMA wal_checkpoint(PASSIVE)');

/** What a checkpoint reports: frames in the WAL, and how many of them were not copied yet when it finished. */
export interface CheckpointReport {
  log: number;
  left: number;
}

parentPort!.on('message', (request: 'checkpoint' | 'close') => {
  if (request === 'close') {
    db.close();
    parentPort!.close();
    return;
  }
  let report: CheckpointReport = { log: -1, left: -1 };
  try {
    // busy: another checkpoint ran meanwhile; log: frames in the WAL; checkpointed: frames copied
    const result = checkpoint.get() as { busy: number; log: number; checkpointed: number };
    report = { log: result.log, left: result.log - result.checkpointed };
  } catch {
    // SQLITE_BUSY while the writer holds a lock it needs: try again next time
  }
  parentPort!.postMessage(report);
});
