CREATE TABLE `imports` (
	`id` text PRIMARY KEY NOT NULL,
	`firm_id` text NOT NULL,
	`type` text NOT NULL,
	`state` text NOT NULL,
	`created_at` integer NOT NULL
);
