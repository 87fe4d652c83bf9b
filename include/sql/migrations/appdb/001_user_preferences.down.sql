-- Undo 001: the table is new and only this migration created it, so dropping it loses nothing older.
-- squawk-ignore ban-drop-table
DROP TABLE user_preferences;
