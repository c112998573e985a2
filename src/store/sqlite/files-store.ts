import { and, eq, isNotNull, lte, sql } from 'drizzle-orm'
import type { FilesStore } from '../files-store.js'
import { exportJobs } from '../schema.js'
import type { Db, Run } from './connection.js'

const completedWithFile = and(eq(exportJobs.status, 'Completed'), isNotNull(exportJobs.fileName))

/** The files store on SQLite; `run` decides when each call may touch the connection. */
export function createFilesStore (db: Db, run: Run): FilesStore {
  return {
    selectJobFile: (jobId) => run(() => db.select({
      id: exportJobs.id,
      status: exportJobs.status,
      firmId: exportJobs.firmId,
      objectType: exportJobs.objectType,
      cursorIn: exportJobs.cursorIn,
      fileName: exportJobs.fileName,
      bytes: exportJobs.bytes,
      expiresAt: exportJobs.expiresAt,
    }).from(exportJobs).where(eq(exportJobs.id, jobId)).get()),
    selectExpiredFiles: (now) => run(() => db.select({ id: exportJobs.id, fileName: sql<string>`${exportJobs.fileName}` })
      .from(exportJobs).where(and(completedWithFile, lte(exportJobs.expiresAt, now))).all()),
    selectLiveFileNames: () => run(() => new Set(db.select({ fileName: sql<string>`${exportJobs.fileName}` })
      .from(exportJobs).where(completedWithFile).all().map((r) => r.fileName))),
    markJobFileRemoved: (id, now) => run(() => {
      db.update(exportJobs)
        .set({ fileName: null, expiresAt: sql`min(coalesce(${exportJobs.expiresAt}, ${now}), ${now})` })
        .where(and(eq(exportJobs.id, id), eq(exportJobs.status, 'Completed'))).run()
    }),
  }
}
