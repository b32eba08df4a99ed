import { ActionableError } from '../../model/actionable-error';
import type { FolderInfo } from '../contracts';
import { unknownFolderError } from '../unknown-folder';
import { ewsErrorFor } from './errors';
import type { EwsClient, EwsResponseMessage, XmlObject } from './types';
import { EWS_CODES } from './types';
import { attrOf, childOf, itemsOf, textOf, type XmlNode } from './to-message';

/** Distinguished folders a mail workflow names, with their RFC 6154 use (as the Graph reader lists them). */
export const DISTINGUISHED_FOLDERS: Record<string, string | undefined> = {
	inbox: '\\Inbox',
	sentitems: '\\Sent',
	drafts: '\\Drafts',
	deleteditems: '\\Trash',
	junkemail: '\\Junk',
	outbox: undefined,
};

/**
 * The IMAP names of distinguished folders, for workflows moved from IMAP; tried after the display
 * names. Outlook's English display names ('Sent Items', 'Junk E-mail') fold to the distinguished
 * ids themselves (compared without case, spaces, '-' and '_'), whatever the mailbox's language.
 */
const ALIASES: Record<string, string> = {
	sent: 'sentitems',
	trash: 'deleteditems',
	junk: 'junkemail',
	junkmail: 'junkemail',
	spam: 'junkemail',
};

/** What GetFolder answers for a folder that is not there (a malformed id is not there either). */
const FOLDER_MISSING = new Set(['ErrorFolderNotFound', 'ErrorInvalidIdMalformed', 'ErrorInvalidIdNotAnItemAttachmentId']);

/** FindFolder page (Exchange's default EWSFindCountLimit is 1000). */
const FOLDER_PAGE = 1000;
const FOLDER_PROPERTIES = ['folder:DisplayName', 'folder:ParentFolderId', 'folder:FolderClass', 'folder:TotalCount', 'folder:UnreadCount'];
/** Exchange folder ids are long base64 (with '/' and '+'); a display name rarely looks like one. */
const LOOKS_LIKE_ID = /^[A-Za-z0-9+/_=-]{40,}$/;

/** A folder as EWS operations take it: `<t:FolderId Id>` or `<t:DistinguishedFolderId Id>`. */
export type FolderRef = { distinguished: string } | { id: string };

export interface ResolvedFolder {
	ref: FolderRef;
}

interface ListedFolder {
	id: string;
	parentId?: string;
	displayName: string;
	folderClass?: string;
	total?: number;
	unread?: number;
}

/**
 * Turns the folder a user gave into an EWS folder reference, in this order: a distinguished
 * folder id in any case, spaces and dashes ignored ('INBOX', 'Sent Items', 'Junk E-mail'); a
 * display-name path such as 'Inbox/Projects' (one level at a time, the exact name first, then
 * without case when that is unique); a folder id of the mailbox; an IMAP name ('Sent', 'Trash',
 * 'Junk', 'Spam'); a string that looks like a folder id, as is (the server decides). Anything
 * else is an error that lists the folders that exist. The folders are listed once per reader.
 *
 * listFolders() gives, like the Graph reader, `path` = the distinguished id where there is one,
 * else the FolderId (what the other calls take unchanged, whatever the folder is renamed to), and
 * `name` = the display-name path ('Inbox/Projects').
 */
export class FolderResolver {
	private readonly cache = new Map<string, ResolvedFolder>();
	private tree?: Promise<{ folders: ListedFolder[]; distinguished: Map<string, string> }>;

	constructor(private readonly client: EwsClient) {}

	async resolve(folder: string): Promise<ResolvedFolder> {
		const given = folder.trim();
		const cached = this.cache.get(given);
		if (cached) return cached;
		const resolved = await this.lookup(given);
		this.cache.set(given, resolved);
		return resolved;
	}

	/** The `<t:FolderId>` / `<t:DistinguishedFolderId>` element (with the delegate mailbox) for a request. */
	element(ref: FolderRef): XmlObject {
		if ('id' in ref) return { 't:FolderId': { '@_Id': ref.id } };
		return { 't:DistinguishedFolderId': { '@_Id': ref.distinguished, ...mailboxOf(this.client) } };
	}

	/**
	 * One GetFolder of a resolved folder (its FolderId and the given properties). A folder the
	 * server does not have is the unknown-folder error naming those that exist.
	 */
	async getFolder(ref: FolderRef, given: string, properties: string[] = []): Promise<XmlNode> {
		const [response] = await this.client.call('GetFolder', {
			'm:FolderShape': {
				't:BaseShape': 'IdOnly',
				...(properties.length ? { 't:AdditionalProperties': { 't:FieldURI': properties.map((uri) => ({ '@_FieldURI': uri })) } } : {}),
			},
			'm:FolderIds': this.element(ref),
		});
		if (response?.responseClass === 'Error' && FOLDER_MISSING.has(response.code)) throw await this.unknown(given);
		const folder = itemsOf(childOf(checked(response, 'GetFolder', this.client).element, 'Folders'))[0];
		if (!folder) throw await this.unknown(given);
		return folder;
	}

	private async lookup(given: string): Promise<ResolvedFolder> {
		if (!given) throw await this.unknown(given);
		const distinguished = distinguishedName(given);
		if (distinguished) return { ref: { distinguished } };
		const { folders, distinguished: ids } = await this.listing();
		const byPath = this.byPath(given, folders, ids);
		if (byPath) return { ref: byPath };
		if (folders.some((f) => f.id === given)) return { ref: { id: given } };
		// After the display names: a mailbox moved from IMAP may have a folder of its own called "Sent".
		const alias = distinguishedName(given, true);
		if (alias) return { ref: { distinguished: alias } };
		if (LOOKS_LIKE_ID.test(given)) return { ref: { id: given } };
		throw await this.unknown(given);
	}

	private byPath(given: string, folders: ListedFolder[], ids: Map<string, string>): FolderRef | undefined {
		const segments = given.split('/').filter((s) => s.length > 0);
		if (!segments.length) return undefined;
		const root = ids.get('msgfolderroot');
		let parent: string | undefined = root;
		let ref: FolderRef | undefined;
		for (const [depth, segment] of segments.entries()) {
			const known = depth === 0 ? distinguishedName(segment) : undefined;
			if (known && ids.has(known)) {
				parent = ids.get(known);
				ref = { distinguished: known };
				continue;
			}
			const children = folders.filter((f) => (parent === undefined ? !f.parentId || !folders.some((p) => p.id === f.parentId) : f.parentId === parent));
			const match = children.find((f) => f.displayName === segment) ?? uniqueFolded(children, segment);
			if (!match) return undefined;
			parent = match.id;
			ref = { id: match.id };
		}
		return ref;
	}

	/** Every mail folder of the mailbox, depth first, for the node's picker (see the class comment). */
	async listFolders(): Promise<FolderInfo[]> {
		const { folders, distinguished } = await this.listing(true);
		const wellKnown = new Map([...distinguished.entries()].map(([name, id]) => [id, name]));
		const root = distinguished.get('msgfolderroot');
		const childrenOf = new Map<string | undefined, ListedFolder[]>();
		const known = new Set(folders.map((f) => f.id));
		for (const folder of folders) {
			const parent = folder.parentId && known.has(folder.parentId) && folder.parentId !== root ? folder.parentId : undefined;
			childrenOf.set(parent, [...(childrenOf.get(parent) ?? []), folder]);
		}
		const result: FolderInfo[] = [];
		const walk = (parent: string | undefined, prefix: string) => {
			for (const folder of childrenOf.get(parent) ?? []) {
				if (folder.id === root) continue;
				const name = `${prefix}${folder.displayName}`;
				const distinguishedId = wellKnown.get(folder.id);
				if (isMailFolder(folder)) {
					result.push({
						path: distinguishedId ?? folder.id,
						name,
						...(distinguishedId && DISTINGUISHED_FOLDERS[distinguishedId] ? { specialUse: DISTINGUISHED_FOLDERS[distinguishedId] } : {}),
						...(folder.total !== undefined ? { total: folder.total } : {}),
						...(folder.unread !== undefined ? { unread: folder.unread } : {}),
					});
				}
				walk(folder.id, `${name}/`);
			}
		};
		walk(undefined, '');
		return result;
	}

	/** The error for a folder that does not exist, naming the ones that do. */
	unknown(given: string): Promise<ActionableError> {
		return unknownFolderError(given, EWS_CODES.FOLDER_NOT_FOUND, { label: 'a distinguished folder', names: Object.keys(DISTINGUISHED_FOLDERS) }, () => this.listFolders());
	}

	/** The folder tree (FindFolder Deep from msgfolderroot) and the distinguished folders' ids, once per reader unless `fresh`. */
	private listing(fresh = false): Promise<{ folders: ListedFolder[]; distinguished: Map<string, string> }> {
		if (!this.tree || fresh) {
			const tree = Promise.all([this.findFolders(), this.distinguishedIds()]).then(([folders, distinguished]) => ({ folders, distinguished }));
			// A failed listing is not kept: the next call asks again.
			tree.catch(() => {
				if (this.tree === tree) this.tree = undefined;
			});
			this.tree = tree;
		}
		return this.tree;
	}

	private async findFolders(): Promise<ListedFolder[]> {
		const folders: ListedFolder[] = [];
		for (let offset = 0; ; ) {
			const [response] = await this.client.call('FindFolder', {
				'@_Traversal': 'Deep',
				'm:FolderShape': {
					't:BaseShape': 'IdOnly',
					't:AdditionalProperties': { 't:FieldURI': FOLDER_PROPERTIES.map((uri) => ({ '@_FieldURI': uri })) },
				},
				'm:IndexedPageFolderView': { '@_MaxEntriesReturned': FOLDER_PAGE, '@_Offset': offset, '@_BasePoint': 'Beginning' },
				'm:ParentFolderIds': this.element({ distinguished: 'msgfolderroot' }),
			});
			const root = checked(response, 'FindFolder', this.client);
			const page = childOf(root.element, 'RootFolder');
			const found = itemsOf(childOf(page, 'Folders'));
			for (const folder of found) {
				const id = attrOf(childOf(folder, 'FolderId'), 'Id');
				if (!id) continue;
				const total = Number(textOf(folder.TotalCount));
				const unread = Number(textOf(folder.UnreadCount));
				folders.push({
					id,
					parentId: attrOf(childOf(folder, 'ParentFolderId'), 'Id'),
					displayName: textOf(folder.DisplayName) ?? '',
					folderClass: textOf(folder.FolderClass),
					...(textOf(folder.TotalCount) !== undefined && Number.isFinite(total) ? { total } : {}),
					...(textOf(folder.UnreadCount) !== undefined && Number.isFinite(unread) ? { unread } : {}),
				});
			}
			offset += found.length;
			const last = attrOf(page, 'IncludesLastItemInRange');
			if (!found.length || last === undefined || last.toLowerCase() === 'true') break;
		}
		return folders;
	}

	/** distinguished id -> FolderId, in one GetFolder; a folder the mailbox lacks is skipped. */
	private async distinguishedIds(): Promise<Map<string, string>> {
		const names = ['msgfolderroot', ...Object.keys(DISTINGUISHED_FOLDERS)];
		const responses = await this.client.call('GetFolder', {
			'm:FolderShape': { 't:BaseShape': 'IdOnly' },
			'm:FolderIds': { 't:DistinguishedFolderId': names.map((name) => ({ '@_Id': name, ...mailboxOf(this.client) })) },
		});
		const ids = new Map<string, string>();
		for (const [index, response] of responses.entries()) {
			if (response.responseClass !== 'Success') {
				// A whole mailbox refused (access, not found) is that error, not a missing folder.
				if (response.code !== 'ErrorFolderNotFound') throw errorOf(response, 'GetFolder', this.client);
				continue;
			}
			const folder = itemsOf(childOf(response.element, 'Folders'))[0];
			const id = attrOf(childOf(folder, 'FolderId'), 'Id');
			if (id && names[index]) ids.set(names[index], id);
		}
		return ids;
	}
}

/** The distinguished id a name stands for, if it stands for one (with `aliases`, also the IMAP names). */
export function distinguishedName(given: string, aliases = false): string | undefined {
	const folded = given.toLowerCase().replace(/[\s_-]+/g, '');
	if (folded === 'msgfolderroot') return undefined;
	if (Object.prototype.hasOwnProperty.call(DISTINGUISHED_FOLDERS, folded)) return folded;
	return aliases ? ALIASES[folded] : undefined;
}

/** The delegate mailbox inside a DistinguishedFolderId (nothing for the account's own or an impersonated one). */
export function mailboxOf(client: EwsClient): XmlObject {
	const element = client.mailboxElement();
	if (!element) return {};
	// Taken whether the client gives the <t:Mailbox> element itself or its content.
	return Object.keys(element).some((key) => /(^|:)Mailbox$/.test(key)) ? element : { 't:Mailbox': element };
}

function uniqueFolded(folders: ListedFolder[], segment: string): ListedFolder | undefined {
	const folded = segment.toLowerCase();
	const matches = folders.filter((f) => f.displayName.toLowerCase() === folded);
	return matches.length === 1 ? matches[0] : undefined;
}

/** Mail folders: IPF.Note (and its sub-classes), or no class at all (folders made by older clients). */
function isMailFolder(folder: ListedFolder): boolean {
	return !folder.folderClass || folder.folderClass === 'IPF.Note' || folder.folderClass.startsWith('IPF.Note.');
}

export function errorOf(response: EwsResponseMessage, operation: string, client: EwsClient): Error {
	return ewsErrorFor(response, { operation, mailbox: client.mailbox });
}

/** The response message when it is a success; its error otherwise (a missing answer is one too). */
export function checked(response: EwsResponseMessage | undefined, operation: string, client: EwsClient): EwsResponseMessage & { element: XmlNode } {
	if (!response) {
		throw new ActionableError(`EWS answered ${operation} without a response message`, EWS_CODES.RESPONSE_INVALID, 'The server is not a working Exchange EWS endpoint; check the EWS URL');
	}
	if (response.responseClass === 'Error') throw errorOf(response, operation, client);
	return response as EwsResponseMessage & { element: XmlNode };
}
