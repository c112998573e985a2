CREATE TABLE `collections` (
	`firm_id` text NOT NULL,
	`type` text NOT NULL,
	`objects` integer NOT NULL,
	PRIMARY KEY(`firm_id`, `type`)
);
--> statement-breakpoint
DROP INDEX `export_jobs_user_idx`;--> statement-breakpoint
ALTER TABLE `export_jobs` ADD `start_offset` integer;--> statement-breakpoint
ALTER TABLE `export_jobs` ADD `remaining` integer;--> statement-breakpoint
CREATE INDEX `export_jobs_user_idx` ON `export_jobs` (`user_id`,`created_at`,`id`);--> statement-breakpoint
-- Kept by the database itself: every insert and delete of an object counts, whoever makes it.
CREATE TRIGGER `objects_count_insert` AFTER INSERT ON `objects` BEGIN
	INSERT INTO `collections` (`firm_id`, `type`, `objects`) VALUES (new.`firm_id`, new.`type`, 1)
	ON CONFLICT (`firm_id`, `type`) DO UPDATE SET `objects` = `objects` + 1;
END;--> statement-breakpoint
CREATE TRIGGER `objects_count_delete` AFTER DELETE ON `objects` BEGIN
	UPDATE `collections` SET `objects` = `objects` - 1 WHERE `firm_id` = old.`firm_id` AND `type` = old.`type`;
END;--> statement-breakpoint
INSERT INTO `collections` (`firm_id`, `type`, `objects`) SELECT `firm_id`, `type`, count(*) FROM `objects` GROUP BY `firm_id`, `type`;
