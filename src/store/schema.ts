import { sql } from 'drizzle-orm'
import { blob, index, integer, primaryKey, sqliteTable, text, uniqueIndex } from 'drizzle-orm/sqlite-core'
import type { JobErrorCode, JobStatus } from '../contract/generated.js'

// Timestamps are integer milliseconds since the epoch (UTC).

export const firms = sqliteTable('firms', {
  id: text('id').primaryKey(),
  name: text('name').notNull(),
  createdAt: integer('created_at').notNull(),
})

export const users = sqliteTable('users', {
  id: text('id').primaryKey(),
  name: text('name').notNull(),
  createdAt: integer('created_at').notNull(),
})

export const memberships = sqliteTable('memberships', {
  userId: text('user_id').notNull().references(() => users.id, { onDelete: 'cascade' }),
  firmId: text('firm_id').notNull().references(() => firms.id, { onDelete: 'cascade' }),
}, (t) => [primaryKey({ columns: [t.userId, t.firmId] })])

export const tokens = sqliteTable('tokens', {
  id: text('id').primaryKey(),
  userId: text('user_id').notNull().references(() => users.id, { onDelete: 'cascade' }),
  /** SHA-256 of the token, hex. The token itself is never stored. */
  hash: text('hash').notNull(),
  /** The first characters of the token, so a person can tell tokens apart. */
  prefix: text('prefix').notNull(),
  createdAt: integer('created_at').notNull(),
  revokedAt: integer('revoked_at'),
}, (t) => [uniqueIndex('tokens_hash_unique').on(t.hash), index('tokens_user_idx').on(t.userId)])

/**
 * A rowid table with a unique (firm, type, id) index: imports with random ids ran
 * several times faster than with a WITHOUT ROWID clustered key (measured on this
 * machine), and keyset reads stay flat because they walk the unique index.
 */
export const objects = sqliteTable('objects', {
  seq: integer('seq').primaryKey(),
  firmId: text('firm_id').notNull(),
  type: text('type').notNull(),
  id: text('id').notNull(),
  /** The object's JSON text as UTF-8 bytes, exactly as stored. */
  doc: blob('doc', { mode: 'buffer' }).notNull(),
  createdAt: integer('created_at').notNull(),
  updatedAt: integer('updated_at').notNull(),
}, (t) => [uniqueIndex('objects_key_unique').on(t.firmId, t.type, t.id)])

/**
 * How many objects each collection holds, kept by triggers on `objects` (see the
 * migration 0002): listing a firm's collections and telling how much of one remains after
 * an export page cost one row read, not a scan.
 */
export const collections = sqliteTable('collections', {
  firmId: text('firm_id').notNull(),
  type: text('type').notNull(),
  objects: integer('objects').notNull(),
}, (t) => [primaryKey({ columns: [t.firmId, t.type] })])

/**
 * Imports under way; their lines are staged in a file each (DATA_DIR/imports). `staging`:
 * the body is still being read and validated (discarded if the server stops). `merging`:
 * the whole body proved valid and is being applied in one transaction, which also
 * deletes this row; a restart applies it again, so a valid import is never lost.
 */
export const imports = sqliteTable('imports', {
  id: text('id').primaryKey(),
  firmId: text('firm_id').notNull(),
  type: text('type').notNull(),
  state: text('state', { enum: ['staging', 'merging'] }).notNull(),
  createdAt: integer('created_at').notNull(),
})

/** The statuses of a job that holds its user's one slot. */
export const ACTIVE_STATUSES: JobStatus[] = ['Pending', 'InProgress']

export const exportJobs = sqliteTable('export_jobs', {
  id: text('id').primaryKey(),
  userId: text('user_id').notNull().references(() => users.id, { onDelete: 'cascade' }),
  firmId: text('firm_id').notNull(),
  objectType: text('object_type').notNull(),
  status: text('status').$type<JobStatus>().notNull(),
  /** The cursor the client sent (null: from the start). */
  cursorIn: text('cursor_in'),
  /** The last id before this page, decoded from cursorIn. */
  afterId: text('after_id'),
  /** How many objects of the chain came before this page (from cursorIn; 0 for the first page, null when unknown). */
  startOffset: integer('start_offset'),
  /** Objects of the collection after this page when it completed (null when unknown). */
  remaining: integer('remaining'),
  processed: integer('processed').notNull().default(0),
  total: integer('total'),
  nextCursor: text('next_cursor'),
  fileName: text('file_name'),
  bytes: integer('bytes'),
  sha256: text('sha256'),
  errorCode: text('error_code').$type<JobErrorCode>(),
  errorMessage: text('error_message'),
  attempts: integer('attempts').notNull().default(0),
  idempotencyKey: text('idempotency_key'),
  requestHash: text('request_hash'),
  createdAt: integer('created_at').notNull(),
  startedAt: integer('started_at'),
  finishedAt: integer('finished_at'),
  expiresAt: integer('expires_at'),
}, (t) => [
  // The database, not a check-then-insert, holds "one Pending-or-InProgress job per user".
  uniqueIndex('export_jobs_one_active_per_user').on(t.userId).where(sql`status IN ('Pending', 'InProgress')`),
  uniqueIndex('export_jobs_idempotency').on(t.userId, t.idempotencyKey).where(sql`idempotency_key IS NOT NULL`),
  index('export_jobs_queue_idx').on(t.status, t.createdAt),
  index('export_jobs_user_idx').on(t.userId, t.createdAt, t.id),
])
