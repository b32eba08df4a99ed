import type { ReadFilter } from '../../model/incoming-message';
import { checked, type FolderResolver, type FolderRef } from './folders';
import { toRestriction } from './restriction';
import type { EwsClient } from './types';
import { attrOf, childOf, idOf, itemsOf } from './to-message';

export const DEFAULT_PAGE_SIZE = 500;
/** Exchange's default EWSFindCountLimit: a larger page is cut to this by the server anyway. */
export const MAX_PAGE_SIZE = 1000;

/**
 * Ids of the messages of a folder matching the filter, newest or oldest received first, at most
 * `limit`: FindItem (Shallow, IdOnly) with an IndexedPageItemView, page after page until the
 * server says it gave the last item or the limit is reached.
 */
export async function findItems(
	client: EwsClient,
	folders: FolderResolver,
	ref: FolderRef,
	filter: ReadFilter,
	order: { newestFirst: boolean; limit: number },
	pageSize = DEFAULT_PAGE_SIZE,
): Promise<string[]> {
	const restriction = toRestriction(filter);
	const size = Math.max(1, Math.min(MAX_PAGE_SIZE, Math.floor(pageSize) || DEFAULT_PAGE_SIZE));
	const ids: string[] = [];
	const seen = new Set<string>();
	let offset = 0;
	while (ids.length < order.limit) {
		const [response] = await client.call('FindItem', {
			'@_Traversal': 'Shallow',
			'm:ItemShape': { 't:BaseShape': 'IdOnly' },
			'm:IndexedPageItemView': { '@_MaxEntriesReturned': Math.min(size, order.limit - ids.length), '@_Offset': offset, '@_BasePoint': 'Beginning' },
			...(restriction ? { 'm:Restriction': restriction } : {}),
			'm:SortOrder': {
				't:FieldOrder': { '@_Order': order.newestFirst ? 'Descending' : 'Ascending', 't:FieldURI': { '@_FieldURI': 'item:DateTimeReceived' } },
			},
			'm:ParentFolderIds': folders.element(ref),
		});
		const page = childOf(checked(response, 'FindItem', client).element, 'RootFolder');
		const items = itemsOf(childOf(page, 'Items'));
		for (const item of items) {
			const id = idOf(item);
			// Mail arriving meanwhile shifts the offsets: an id seen on the previous page is not repeated.
			if (id && !seen.has(id) && ids.length < order.limit) {
				seen.add(id);
				ids.push(id);
			}
		}
		const next = Number(attrOf(page, 'IndexedPagingOffset'));
		offset = Number.isSafeInteger(next) && next > offset ? next : offset + items.length;
		if (!items.length || (attrOf(page, 'IncludesLastItemInRange') ?? 'true').toLowerCase() === 'true') break;
	}
	return ids;
}
