import { ActionableError } from '../model/actionable-error';
import type { FolderInfo } from './contracts';

/**
 * The error for a folder name that matches nothing, naming the folders that do exist (Graph
 * and EWS resolve names the same way; only their built-in names and codes differ).
 * @param builtIn how the protocol's own folder names are called, and the names
 */
export async function unknownFolderError(
	given: string,
	code: string,
	builtIn: { label: string; names: string[] },
	listFolders: () => Promise<FolderInfo[]>,
): Promise<ActionableError> {
	let known: string[] = [];
	try {
		known = (await listFolders()).map((f) => f.name);
	} catch {
		// The listing is a courtesy; the unknown folder is the error to report.
	}
	return new ActionableError(
		`Folder "${given}" does not exist`,
		code,
		`Give ${builtIn.label} (${builtIn.names.join(', ')}), a folder id or a path such as Inbox/Projects${known.length ? `; folders in this mailbox: ${known.join(', ')}` : ''}`,
	);
}
