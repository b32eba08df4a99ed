import type { MailFolder } from '@microsoft/microsoft-graph-types';

import { ActionableError } from '../../model/actionable-error';
import type { FolderInfo } from '../contracts';
import { unknownFolderError } from '../unknown-folder';
import type { GraphClient } from './graph-client';
import { withQuery, type GraphPage } from './odata';

/** Graph's well-known folder names (mailFolder docs), usable in place of an id, with their RFC 6154 use. */
export const WELL_KNOWN_FOLDERS: Record<string, string> = {
	inbox: '\\Inbox',
	sentitems: '\\Sent',
	drafts: '\\Drafts',
	deleteditems: '\\Trash',
	archive: '\\Archive',
	junkemail: '\\Junk',
};

const FOLDER_FIELDS = 'id,displayName,childFolderCount,totalItemCount,unreadItemCount';
const FOLDER_PAGE = 100;
/** Exchange folder ids are long URL-safe base64; a display name rarely looks like one. */
const LOOKS_LIKE_ID = /^[A-Za-z0-9+/_-]{40,}={0,2}$/;

export interface ResolvedFolder {
	/** What goes into `/mailFolders/{ref}`: a well-known name or an id. */
	ref: string;
}

/**
 * Turns the folder a user gave into something Graph takes in a path: a well-known name (any
 * case) or an id as is; otherwise a display-name path such as "Inbox/Projects", matched one
 * level at a time like Outlook does (case-insensitive). Resolutions are cached per reader.
 */
export class FolderResolver {
	private readonly cache = new Map<string, ResolvedFolder>();

	constructor(private readonly graph: GraphClient) {}

	async resolve(folder: string): Promise<ResolvedFolder> {
		const given = folder.trim();
		const cached = this.cache.get(given);
		if (cached) return cached;
		const resolved = await this.lookup(given);
		this.cache.set(given, resolved);
		return resolved;
	}

	private async lookup(given: string): Promise<ResolvedFolder> {
		if (!given) throw await this.unknown(given);
		const wellKnown = given.toLowerCase();
		if (WELL_KNOWN_FOLDERS[wellKnown]) return { ref: wellKnown };
		if (!given.includes('/') && LOOKS_LIKE_ID.test(given)) return { ref: given };
		const segments = given.split('/').filter(Boolean);
		let parent: string | undefined;
		for (const [depth, segment] of segments.entries()) {
			if (depth === 0 && WELL_KNOWN_FOLDERS[segment.toLowerCase()]) {
				parent = segment.toLowerCase();
				continue;
			}
			const children = await this.children(parent);
			const match = children.find((f) => (f.displayName ?? '').toLowerCase() === segment.toLowerCase());
			if (!match?.id) throw await this.unknown(given);
			parent = match.id;
		}
		if (!parent) throw await this.unknown(given);
		return { ref: parent };
	}

	/** Folders directly under `parent` (top level when undefined), every page. */
	async children(parent: string | undefined): Promise<MailFolder[]> {
		const base = parent ? `${this.graph.mailbox}/mailFolders/${encodeURIComponent(parent)}/childFolders` : `${this.graph.mailbox}/mailFolders`;
		const folders: MailFolder[] = [];
		let link: string | undefined = withQuery(base, { $select: FOLDER_FIELDS, $top: FOLDER_PAGE });
		while (link) {
			const page: GraphPage<MailFolder> = await this.graph.get<GraphPage<MailFolder>>(link);
			folders.push(...(page.value ?? []));
			link = page['@odata.nextLink'];
		}
		return folders;
	}

	/**
	 * Every folder of the mailbox for the node's picker, depth first, with display paths such as
	 * "Inbox/Projects" as names; `path` is the well-known name where there is one, else the id.
	 */
	async listFolders(): Promise<FolderInfo[]> {
		const wellKnown = await this.wellKnownIds();
		const result: FolderInfo[] = [];
		const walk = async (parent: string | undefined, prefix: string) => {
			for (const folder of await this.children(parent)) {
				if (!folder.id) continue;
				const name = `${prefix}${folder.displayName ?? ''}`;
				const known = wellKnown.get(folder.id);
				result.push({
					path: known ?? folder.id,
					name,
					...(known ? { specialUse: WELL_KNOWN_FOLDERS[known] } : {}),
					...(typeof folder.totalItemCount === 'number' ? { total: folder.totalItemCount } : {}),
					...(typeof folder.unreadItemCount === 'number' ? { unread: folder.unreadItemCount } : {}),
				});
				if ((folder.childFolderCount ?? 0) > 0) await walk(folder.id, `${name}/`);
			}
		};
		await walk(undefined, '');
		return result;
	}

	/** id -> well-known name, in one `$batch`; a folder the mailbox lacks (archive) is skipped. */
	private async wellKnownIds(): Promise<Map<string, string>> {
		const names = Object.keys(WELL_KNOWN_FOLDERS);
		const results = await this.graph.batch(names.map((name) => ({ method: 'GET' as const, url: `${this.graph.mailbox}/mailFolders/${name}?$select=id` })));
		const ids = new Map<string, string>();
		for (const [i, result] of results.entries()) {
			const id = (result.body as { id?: string } | undefined)?.id;
			if (result.status === 200 && id) ids.set(id, names[i]);
		}
		return ids;
	}

	/** The error for a folder that does not exist, naming the ones that do. */
	unknown(given: string): Promise<ActionableError> {
		return unknownFolderError(given, 'GRAPH_UNKNOWN_FOLDER', { label: 'a well-known name', names: Object.keys(WELL_KNOWN_FOLDERS) }, () => this.listFolders());
	}
}
