import type { ExportJob } from './exports-store.js'

/** A completed job's file as downloads and retention see it. */
export type JobFile = Pick<ExportJob, 'id' | 'status' | 'firmId' | 'objectType' | 'cursorIn' | 'fileName' | 'bytes' | 'expiresAt'>

/** Which export files exist and until when. */
export interface FilesStore {
  selectJobFile: (jobId: string) => Promise<JobFile | undefined>
  /** Completed jobs whose file expired at or before `now`. */
  selectExpiredFiles: (now: number) => Promise<Array<{ id: string, fileName: string }>>
  /** The file names completed jobs still own. */
  selectLiveFileNames: () => Promise<Set<string>>
  /** Records that a completed job's file is gone (expired or deleted early). */
  markJobFileRemoved: (id: string, now: number) => Promise<void>
}
