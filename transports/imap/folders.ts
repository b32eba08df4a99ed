import type { ImapFlow } from 'imapflow';

import type { FolderInfo } from '../contracts';
import { unknownFolder } from './errors';

export async function listFolders(client: ImapFlow): Promise<FolderInfo[]> {
	const folders = await client.list();
	return folders.map((f) => ({ path: f.path, name: f.name, ...(f.specialUse ? { specialUse: f.specialUse } : {}) }));
}

/** What SELECT / EXAMINE said about the folder. */
export interface OpenedFolder {
	path: string;
	readOnly: boolean;
	uidValidity: number;
	uidNext: number;
	exists: number;
}

/** SELECT (read-write) or EXAMINE (read-only); an unknown folder is an error listing those that exist. */
export async function openFolder(client: ImapFlow, folder: string, readOnly: boolean): Promise<OpenedFolder> {
	try {
		const mailbox = await client.mailboxOpen(folder, { readOnly });
		return { path: folder, readOnly, uidValidity: Number(mailbox.uidValidity), uidNext: mailbox.uidNext, exists: mailbox.exists };
	} catch (error) {
		await assertFolderExists(client, folder);
		throw error;
	}
}

export async function assertFolderExists(client: ImapFlow, folder: string, role = ''): Promise<void> {
	const known = (await listFolders(client)).map((f) => f.path);
	if (!known.includes(folder)) throw unknownFolder(folder, known, role);
}
